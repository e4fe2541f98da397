"""Signed gate verdicts: each unit (and model) that passes a gate gets an in-toto statement, a SLSA
verification summary with shipyard's figures, attached as a cosign attestation under its digest and the
platform manifests the gate covered; a failed one gets nothing. These are the signing primitives; the gates
reach them through ``gate.py``, the one module that signs. The statement's shape and its platforms: the
architecture page, "Signed gate verdicts"."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ...events import Emit, Event
from ...oci.attestations import image_platforms
from ...oci.client import RegistryClient
from ...oci.cosign import newest_statements, push_attestation
from ...oci.signing import PublicKey, SigningKey
from ...record import ReleaseRecord
from ...verdicts import GATE_NAMES, GateName, ModelVerifyVerdict, Verdict, covered_platforms

VSA = "https://slsa.dev/verification_summary/v1"
VERIFIER = "https://github.com/shipyard-ml/shipyard"  # who verified: this tool
PARALLEL_UNITS = 8  # verdicts attached at once (registry round trips)


@dataclass(frozen=True)
class SignedVerdict:
    """shipyard's part of a trusted, passing verdict statement, as the registry holds it: what promotion,
    deploy and the report read (the record's verdicts are a summary; this is the authority)."""

    gate: str
    unit: str  # the unit's key, or ``models/<name>``
    release: str
    revision: str
    policy: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)  # the record's verdict when it was signed, logs left out
    platforms: dict[str, str] | None = None  # platform -> manifest covered; None: signed before verdicts named them

    @classmethod
    def of(cls, ours: Mapping[str, Any]) -> SignedVerdict:
        """Read the statement's ``predicate.shipyard``; a field missing or of another type reads as empty."""

        def text(name: str) -> str:
            value = ours.get(name)
            return value if isinstance(value, str) else ""

        def table(name: str) -> dict[str, Any]:
            value = ours.get(name)
            return dict(value) if isinstance(value, Mapping) else {}

        listed = ours.get("platforms")
        platforms = {str(k): str(v) for k, v in listed.items()} if isinstance(listed, Mapping) else None
        return cls(text("gate"), text("unit"), text("release"), text("revision"), table("policy"), table("result"),
                   platforms)  # fmt: skip

    def same_as(self, claim: Mapping[str, Any]) -> bool:
        """Whether ``claim`` (a statement's shipyard part about to be signed) says what this one does."""
        return self == SignedVerdict.of({**claim, "gate": self.gate, "unit": self.unit})


def _path(repository: str) -> str:
    """A record's repository (host/path) as a path inside the registry."""
    return repository.split("/", 1)[1]


@dataclass(frozen=True)
class Artifact:
    """What a verdict is about: an image (its index) or a model, by digest, under its name in the record."""

    key: str  # the unit's key, or ``models/<name>``
    repository: str  # host/path
    digest: str


def statement(
    record: ReleaseRecord,
    key: str,
    gate: GateName,
    policy: Mapping[str, Any],
    manifests: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The signed claim that ``key``'s image passed ``gate`` of ``record.release`` under ``policy``, on the
    platforms it covered; ``manifests``: platform -> its manifest's digest in the unit's index."""
    unit = record.units[key]
    verdict = unit.verdicts.of(gate)
    if verdict is None:
        raise KeyError(f"{key} has no {gate} verdict")
    details = {k: v for k, v in verdict.to_dict().items() if k != "logs"}
    known = dict(manifests or {})
    covered = {p: known[p] for p in covered_platforms(verdict, unit.platform) if p in known}
    return subject_statement(record, Artifact(key, unit.repository, unit.digest), gate, policy, details, covered)


def model_statement(record: ReleaseRecord, name: str, gate: GateName, policy: Mapping[str, Any]) -> dict[str, Any]:
    """The signed claim that the model ``name`` of ``record.release`` passed ``gate`` (verify: a model is only
    verified); its ``unit`` is ``models/<name>``."""
    model = record.models[name]
    verdict = model.verdicts.verify
    if gate != "verify" or verdict is None:
        raise KeyError(f"model {name} has no {gate} verdict")
    artifact = Artifact(f"models/{name}", model.repository, model.digest)
    return subject_statement(record, artifact, gate, policy, verdict.to_dict())


def subject_statement(
    record: ReleaseRecord,
    artifact: Artifact,
    gate: str,
    policy: Mapping[str, Any],
    details: Mapping[str, Any],
    platforms: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The in-toto statement of a passed ``gate`` for ``artifact``; ``platforms``: the platforms it covered ->
    their manifests, subjects too (None: a model, no platforms)."""
    repository, digest = artifact.repository, artifact.digest
    policy_json = json.dumps(policy, sort_keys=True, separators=(",", ":")).encode()
    subjects = [digest, *(d for d in dict.fromkeys((platforms or {}).values()) if d != digest)]
    ours: dict[str, Any] = {
        "gate": gate,
        "unit": artifact.key,
        "release": record.release,
        "revision": record.revision,
        "policy": dict(policy),
        "result": dict(details),
    }
    if platforms is not None:
        ours["platforms"] = dict(platforms)
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repository, "digest": {"sha256": d.removeprefix("sha256:")}} for d in subjects],
        "predicateType": VSA,
        "predicate": {
            "verifier": {"id": VERIFIER},
            "timeVerified": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resourceUri": f"{repository}@{digest}",
            "policy": {"uri": f"shipyard:{gate}", "digest": {"sha256": hashlib.sha256(policy_json).hexdigest()}},
            "verificationResult": "PASSED",
            "verifiedLevels": [f"SHIPYARD_{gate.upper()}_PASSED"],
            "shipyard": ours,
        },
    }


def attest_gate(
    registry: RegistryClient,
    signer: SigningKey,
    record: ReleaseRecord,
    gate: GateName,
    policy: Mapping[str, Any],
    emit: Emit,
    keys: Iterable[str] | None = None,
) -> list[str]:
    """Sign and attach the verdict of every unit (of ``keys``) that passed ``gate``, side by side; the
    units attested."""

    def subject(key: str) -> _Subject:
        unit = record.units[key]

        def claim() -> dict[str, Any]:  # in the pool: the index is read beside the other units'
            index = registry.manifest(_path(unit.repository), unit.digest)
            listed = {unit.platform: unit.digest} if index is not None and not index.is_index else {}
            return statement(record, key, gate, policy, listed or (image_platforms(index) if index else {}))

        return unit.repository, unit.digest, unit.verdicts.of(gate), claim

    wanted = list(keys if keys is not None else record.units)
    return _attach_all(registry, signer, gate, {key: subject(key) for key in wanted}, "unit(s)", emit)


def attest_models(
    registry: RegistryClient,
    signer: SigningKey,
    record: ReleaseRecord,
    gate: GateName,
    policy: Mapping[str, Any],
    emit: Emit,
) -> list[str]:
    """Sign and attach the verdict of every model of the release that passed ``gate`` (models are only
    verified: their files are data, there is nothing to scan or run); the models attested."""

    def subject(name: str) -> _Subject:
        model = record.models[name]
        claim = lambda: model_statement(record, name, gate, policy)  # noqa: E731
        return model.repository, model.digest, model.verdicts.verify if gate == "verify" else None, claim

    return _attach_all(registry, signer, gate, {name: subject(name) for name in record.models}, "model(s)", emit)


# what gets a verdict: its repository (host/path), digest, the verdict in the record, and its statement
_Subject = tuple[str, str, "Verdict | ModelVerifyVerdict | None", Callable[[], dict[str, Any]]]


def _attach_all(
    registry: RegistryClient,
    signer: SigningKey,
    gate: str,
    subjects: Mapping[str, _Subject],
    what: str,
    emit: Emit,
) -> list[str]:
    """Attach each passed verdict of ``subjects`` that is not signed already, side by side, under each of its
    statement's subjects (an image's index and the platform manifests it covered); the names attested."""

    def attach(item: tuple[str, _Subject]) -> bool:
        _, (repository, digest, verdict, make_claim) = item
        if verdict is None or not verdict.passed:
            return False  # a failed or missing verdict is never signed
        claim = make_claim()
        ours = claim["predicate"]["shipyard"]
        release = str(ours["release"])
        pushed = False
        for subject in claim["subject"]:  # the index first, as before: what trust reads
            at = "sha256:" + subject["digest"]["sha256"]
            held = signed_verdicts(registry, [signer.public], _path(repository), at, release).get(gate)
            if held is not None and held.same_as(ours):
                continue  # the same verdict is already signed: a gate run again adds nothing
            # one label per gate and release: a reused digest keeps each release's verdict, and gains its own
            push_attestation(registry, _path(repository), at, claim, signer, label=f"{gate}@{release}")
            pushed = True
        return pushed

    items = list(subjects.items())
    with ThreadPoolExecutor(max_workers=PARALLEL_UNITS) as pool:
        attested = [name for (name, _), done in zip(items, pool.map(attach, items), strict=True) if done]
    if attested:
        emit(Event("verdict.signed", f"{gate}: signed verdicts attached to {len(attested)} {what} "
                   f"({signer.public.key_id[:19]}…)"))  # fmt: skip
    return attested


def signed_verdicts(
    registry: RegistryClient, trusted: Iterable[PublicKey], path: str, digest: str, release: str | None = None
) -> dict[str, SignedVerdict]:
    """gate -> shipyard's part of a trusted, passing verdict for the image (or model) ``path@digest``: the
    newest one made **for** ``release``, or with ``release`` None the newest of any release.

    Read newest first, and only until every gate has one: a digest reused by many releases carries a
    verdict of each, and the layers labelled with a gate already found (or, for one release, with another
    release: ``<gate>@<release>``) are not read."""
    found: dict[str, SignedVerdict] = {}

    def skip(label: str) -> bool:
        gate, _, made_for = label.partition("@")
        return gate in found or bool(release and made_for and made_for != release)

    for _, statement_ in newest_statements(registry, path, digest, list(trusted), VSA, skip=skip):
        predicate = statement_.get("predicate") or {}
        ours = predicate.get("shipyard") or {}
        gate = ours.get("gate")
        if release is not None and ours.get("release") != release:
            continue  # the label is unsigned: the statement's own release decides
        if predicate.get("verificationResult") == "PASSED" and gate in GATE_NAMES and gate not in found:
            found[str(gate)] = SignedVerdict.of(ours)
            if len(found) == len(GATE_NAMES):
                break
    return found
