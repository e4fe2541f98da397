"""Signed gate verdicts: each unit that passes a gate gets a signed statement stored beside its image.

The statement is an in-toto v1 statement whose subject is the image by digest and whose predicate is
a SLSA verification summary (``https://slsa.dev/verification_summary/v1``): verifier ``shipyard``, the
gate and the policy it applied, ``PASSED``, and shipyard's figures (the checks, the scan's counts and
database, the canary's p50/p95 against its SLO) with the release and its git revision. It goes into
the registry as a cosign attestation (``sha256-<hex>.att``, a DSSE envelope), so promotion, deploy
and ``cosign verify-attestation`` decide from the registry, not from the record file. A unit that
failed the gate gets nothing: there is no signed failure to promote from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from ...events import Emit, Event
from ...oci.client import RegistryClient
from ...oci.cosign import newest_statements, push_attestation
from ...oci.signing import PublicKey, SigningKey
from ...record import ReleaseRecord

VSA = "https://slsa.dev/verification_summary/v1"
VERIFIER = "https://github.com/shipyard-ml/shipyard"  # who verified: this tool
GATES = ("verify", "scan", "canary")
PARALLEL_UNITS = 8  # verdicts attached at once (registry round trips)


def _path(repository: str) -> str:
    """A record's repository (host/path) as a path inside the registry."""
    return repository.split("/", 1)[1]


def statement(record: ReleaseRecord, key: str, gate: str, policy: Mapping[str, Any]) -> dict[str, Any]:
    """The signed claim that ``key``'s image passed ``gate`` of ``record.release`` under ``policy``."""
    unit = record.units[key]
    details = {k: v for k, v in unit.verdicts[gate].items() if k != "logs"}
    return subject_statement(record, unit.repository, unit.digest, key, gate, policy, details)


def model_statement(record: ReleaseRecord, name: str, gate: str, policy: Mapping[str, Any]) -> dict[str, Any]:
    """The signed claim that the model ``name`` of ``record.release`` passed ``gate``; its ``unit`` is
    ``models/<name>``."""
    model = record.models[name]
    return subject_statement(record, model.repository, model.digest, f"models/{name}", gate, policy,
                             dict(model.verdicts[gate]))  # fmt: skip


def subject_statement(
    record: ReleaseRecord,
    repository: str,
    digest: str,
    key: str,
    gate: str,
    policy: Mapping[str, Any],
    details: Mapping[str, Any],
) -> dict[str, Any]:
    """The in-toto statement of a passed ``gate`` for the artifact ``repository@digest`` (an image or a model)."""
    policy_json = json.dumps(policy, sort_keys=True, separators=(",", ":")).encode()
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repository, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": VSA,
        "predicate": {
            "verifier": {"id": VERIFIER},
            "timeVerified": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resourceUri": f"{repository}@{digest}",
            "policy": {"uri": f"shipyard:{gate}", "digest": {"sha256": hashlib.sha256(policy_json).hexdigest()}},
            "verificationResult": "PASSED",
            "verifiedLevels": [f"SHIPYARD_{gate.upper()}_PASSED"],
            "shipyard": {
                "gate": gate,
                "unit": key,
                "release": record.release,
                "revision": record.revision,
                "policy": dict(policy),
                "result": dict(details),
            },
        },
    }


def attest_gate(
    registry: RegistryClient,
    signer: SigningKey,
    record: ReleaseRecord,
    gate: str,
    policy: Mapping[str, Any],
    emit: Emit,
    keys: Iterable[str] | None = None,
) -> list[str]:
    """Sign and attach the verdict of every unit (of ``keys``) that passed ``gate``, side by side; the
    units attested."""

    def subject(key: str) -> _Subject:
        unit = record.units[key]
        return unit.repository, unit.digest, unit.verdicts.get(gate), lambda: statement(record, key, gate, policy)

    wanted = list(keys if keys is not None else record.units)
    return _attach_all(registry, signer, gate, {key: subject(key) for key in wanted}, "unit(s)", emit)


def attest_models(
    registry: RegistryClient,
    signer: SigningKey,
    record: ReleaseRecord,
    gate: str,
    policy: Mapping[str, Any],
    emit: Emit,
) -> list[str]:
    """Sign and attach the verdict of every model of the release that passed ``gate`` (models are only
    verified: their files are data, there is nothing to scan or run); the models attested."""

    def subject(name: str) -> _Subject:
        model = record.models[name]
        claim = lambda: model_statement(record, name, gate, policy)  # noqa: E731
        return model.repository, model.digest, model.verdicts.get(gate), claim

    return _attach_all(registry, signer, gate, {name: subject(name) for name in record.models}, "model(s)", emit)


# what gets a verdict: its repository (host/path), digest, the verdict in the record, and its statement
_Subject = tuple[str, str, "dict[str, Any] | None", Callable[[], dict[str, Any]]]


def _attach_all(
    registry: RegistryClient,
    signer: SigningKey,
    gate: str,
    subjects: Mapping[str, _Subject],
    what: str,
    emit: Emit,
) -> list[str]:
    """Attach each passed verdict of ``subjects`` that is not signed already, side by side; the names attested."""

    def attach(item: tuple[str, _Subject]) -> bool:
        _, (repository, digest, verdict, make_claim) = item
        if not verdict or not verdict.get("passed"):
            return False  # a failed or missing verdict is never signed
        claim = make_claim()
        ours = claim["predicate"]["shipyard"]
        release = str(ours["release"])
        held = signed_verdicts(registry, [signer.public], _path(repository), digest, release).get(gate)
        if held is not None and all(held.get(k) == ours[k] for k in ("release", "revision", "policy", "result")):
            return False  # the same verdict is already signed: a gate run again adds nothing
        # one label per gate and release: a reused digest keeps each release's verdict, and gains its own
        push_attestation(registry, _path(repository), digest, claim, signer, label=f"{gate}@{release}")
        return True

    items = list(subjects.items())
    with ThreadPoolExecutor(max_workers=PARALLEL_UNITS) as pool:
        attested = [name for (name, _), done in zip(items, pool.map(attach, items), strict=True) if done]
    if attested:
        emit(Event("verdict.signed", f"{gate}: signed verdicts attached to {len(attested)} {what} "
                   f"({signer.public.key_id[:19]}…)"))  # fmt: skip
    return attested


def signed_verdicts(
    registry: RegistryClient, trusted: Iterable[PublicKey], path: str, digest: str, release: str | None = None
) -> dict[str, dict[str, Any]]:
    """gate -> shipyard's part of a trusted, passing verdict for the image (or model) ``path@digest``: the
    newest one made **for** ``release``, or with ``release`` None the newest of any release.

    Read newest first, and only until every gate has one: a digest reused by many releases carries a
    verdict of each, and the layers labelled with a gate already found (or, for one release, with another
    release: ``<gate>@<release>``) are not read."""
    found: dict[str, dict[str, Any]] = {}

    def skip(label: str) -> bool:
        gate, _, made_for = label.partition("@")
        return gate in found or bool(release and made_for and made_for != release)

    for _, statement_ in newest_statements(registry, path, digest, list(trusted), VSA, skip=skip):
        predicate = statement_.get("predicate") or {}
        ours = predicate.get("shipyard") or {}
        gate = ours.get("gate")
        if release is not None and ours.get("release") != release:
            continue  # the label is unsigned: the statement's own release decides
        if predicate.get("verificationResult") == "PASSED" and gate in GATES and gate not in found:
            found[str(gate)] = ours
            if len(found) == len(GATES):
                break
    return found
