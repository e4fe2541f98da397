"""What may ship, decided from the registry and not the record: every unit's digest signed by a trusted
key with signed verify, scan and canary verdicts for its revision and each platform, every model signed
and verified; an empty list of units is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ...oci.attestations import image_platforms
from ...oci.client import RegistryClient
from ...oci.cosign import verified_signers
from ...oci.signing import PublicKey
from ...record import ReleaseRecord, UnitRecord
from ..gates.verdicts import SignedVerdict, signed_verdicts

PARALLEL_REQUESTS = 8


@dataclass(frozen=True)
class Evidence:
    """What the registry holds, under trusted keys, for one image digest."""

    signers: list[str]
    verdicts: dict[str, SignedVerdict] = field(default_factory=dict)  # gate -> shipyard's part of the verdict


def evidence(
    registry: RegistryClient, trusted: Sequence[PublicKey], path: str, digest: str, release: str | None = None
) -> Evidence:
    """``path``: the repository inside the registry; ``release``: only verdicts made for that release
    count (None: the newest of any release, for a digest no record names)."""
    signers = verified_signers(registry, path, digest, trusted)
    return Evidence(signers, signed_verdicts(registry, trusted, path, digest, release))


def gather(
    registry: RegistryClient, trusted: Sequence[PublicKey], units: dict[str, UnitRecord], release: str
) -> dict[str, Evidence]:
    def one(unit: UnitRecord) -> Evidence:
        return evidence(registry, trusted, unit.repository.split("/", 1)[1], unit.digest, release)

    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        return dict(zip(units, pool.map(one, units.values()), strict=True))


def trust_problems(
    registry: RegistryClient, trusted: Sequence[PublicKey], record: ReleaseRecord, keys: Iterable[str]
) -> list[str]:
    """What stands between ``keys`` of ``record`` and a channel or a machine, read from the registry."""
    wanted = list(keys)
    if not wanted:
        return [f"release {record.release}: no unit to check"]
    if not trusted:
        return ["no trusted key to check signatures with"]
    services = [k for k, u in record.units.items() if u.kind == "service"]
    found = gather(registry, trusted, {k: record.units[k] for k in dict.fromkeys([*wanted, *services])}, record.release)
    problems = []
    for key in wanted:
        unit, proof = record.units[key], found[key]
        short = unit.digest[:19]
        if not proof.signers:
            problems.append(f"{key}: {short} has no signature by a trusted key")
        other = _elsewhere(registry, trusted, unit.repository, unit.digest)
        for gate in ("verify", "scan"):
            problems += _verdict_problem(key, short, gate, proof.verdicts.get(gate), record, other, unit)
    canaried = {record.units[k].profile for k in services if _matches(found[k].verdicts.get("canary"), record)}
    if not canaried:
        problems.append(f"release {record.release}: no signed canary verdict (run `shipyard canary`)")
    for key in wanted:
        unit = record.units[key]
        if unit.kind == "service" and unit.profile in canaried:
            other = _elsewhere(registry, trusted, unit.repository, unit.digest)
            problems += _verdict_problem(key, unit.digest[:19], "canary", found[key].verdicts.get("canary"), record,
                                         other, unit)  # fmt: skip
    return problems + model_problems(registry, trusted, record, wanted)


def model_problems(
    registry: RegistryClient, trusted: Sequence[PublicKey], record: ReleaseRecord, keys: Iterable[str]
) -> list[str]:
    """What stands between the models the units ``keys`` were released with and a channel or a machine:
    each model's digest signed by a trusted key and carrying a signed verify verdict of this revision."""
    needed: dict[str, str] = {}
    for key in keys:
        needed.update(record.units[key].models)
    problems, checked = [], {}
    for name, digest in needed.items():
        model = record.models.get(name)
        if model is None or model.digest != digest:
            problems.append(f"model {name}: {digest[:19]} is not among the release's models (was the record edited?)")
        else:
            checked[name] = model
    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        proofs = pool.map(lambda m: evidence(registry, trusted, m.repository.split("/", 1)[1], m.digest,
                                             record.release), checked.values())  # fmt: skip
        for (name, model), proof in zip(checked.items(), proofs, strict=True):
            label = f"model {name}"
            if not proof.signers:
                problems.append(f"{label}: {model.digest[:19]} has no signature by a trusted key")
            other = _elsewhere(registry, trusted, model.repository, model.digest)
            problems += _verdict_problem(label, model.digest[:19], "verify", proof.verdicts.get("verify"), record,
                                         other)  # fmt: skip
    return problems


def _matches(verdict: SignedVerdict | None, record: ReleaseRecord) -> bool:
    return verdict is not None and verdict.revision == record.revision


Elsewhere = Callable[[str], "str | None"]  # gate -> the release whose verdict the digest carries instead, if any


def _elsewhere(registry: RegistryClient, trusted: Sequence[PublicKey], repository: str, digest: str) -> Elsewhere:
    """Which release's verdict of a gate the digest carries, read only when a problem is to be named."""

    def other(gate: str) -> str | None:
        verdict = signed_verdicts(registry, trusted, repository.split("/", 1)[1], digest).get(gate)
        return verdict.release if verdict else None

    return other


def _verdict_problem(
    key: str,
    short: str,
    gate: str,
    verdict: SignedVerdict | None,
    record: ReleaseRecord,
    elsewhere: Elsewhere = lambda gate: None,
    unit: UnitRecord | None = None,
) -> list[str]:
    """``unit``: the image the verdict is of, each of whose platforms it must cover (None: a model)."""
    if verdict is None:
        other = elsewhere(gate)
        held = f" (its signed {gate} verdict is of release {other}, not of {record.release})" if other else ""
        return [f"{key}: no signed {gate} verdict of release {record.release} for {short}{held}"]
    if verdict.revision != record.revision:
        return [f"{key}: the signed {gate} verdict for {short} is of revision {verdict.revision[:8]}, "
                f"not the release's {record.revision[:8]}"]  # fmt: skip
    if unit is None:
        return []
    covered = signed_platforms(verdict, unit)
    return [f"{key}: the signed {gate} verdict of release {record.release} for {short} does not cover {platform} "
            f"(it covers {', '.join(covered) or 'no platform'})"
            for platform in unit.platforms or [unit.platform] if platform not in covered]  # fmt: skip


def signed_platforms(verdict: SignedVerdict, unit: UnitRecord) -> list[str]:
    """The platforms a signed verdict (shipyard's part of it) covers: its ``platforms``; one without them
    (written before verdicts named platforms) covers the unit's primary platform only."""
    return list(verdict.platforms) if verdict.platforms is not None else [unit.platform]


def digest_problems(
    registry: RegistryClient,
    trusted: Sequence[PublicKey],
    label: str,
    path: str,
    digest: str,
    gates: Sequence[str] = ("verify", "scan"),
) -> list[str]:
    """For an artifact no record names (a channel's digest, on its way to a machine): signed and carrying
    a signed verdict of each of ``gates`` (an image: verified and scanned; a model: verified)."""
    proof = evidence(registry, trusted, path, digest)
    problems = [] if proof.signers else [f"{label}: {digest[:19]} has no signature by a trusted key"]
    problems += [f"{label}: no signed {gate} verdict for {digest[:19]}" for gate in gates
                 if gate not in proof.verdicts]  # fmt: skip
    found = registry.manifest(path, digest) if len(proof.verdicts) else None
    platforms = list(image_platforms(found)) if found is not None else []
    if len(platforms) > 1:  # a multi-platform index: each verdict covers each of its images (none is primary here)
        for gate in (g for g in gates if g in proof.verdicts):
            covered = list(proof.verdicts[gate].platforms or {})
            problems += [f"{label}: the signed {gate} verdict for {digest[:19]} does not cover {platform}"
                         for platform in platforms if platform not in covered]  # fmt: skip
    return problems
