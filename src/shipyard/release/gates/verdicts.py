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
from collections.abc import Iterable, Mapping
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
    policy_json = json.dumps(policy, sort_keys=True, separators=(",", ":")).encode()
    details = {k: v for k, v in unit.verdicts[gate].items() if k != "logs"}
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": unit.repository, "digest": {"sha256": unit.digest.removeprefix("sha256:")}}],
        "predicateType": VSA,
        "predicate": {
            "verifier": {"id": VERIFIER},
            "timeVerified": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resourceUri": f"{unit.repository}@{unit.digest}",
            "policy": {"uri": f"shipyard:{gate}", "digest": {"sha256": hashlib.sha256(policy_json).hexdigest()}},
            "verificationResult": "PASSED",
            "verifiedLevels": [f"SHIPYARD_{gate.upper()}_PASSED"],
            "shipyard": {
                "gate": gate,
                "unit": key,
                "release": record.release,
                "revision": record.revision,
                "policy": dict(policy),
                "result": details,
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

    def attest(key: str) -> bool:
        unit = record.units[key]
        verdict = unit.verdicts.get(gate)
        if not verdict or not verdict.get("passed"):
            return False  # a failed or missing verdict is never signed
        claim = statement(record, key, gate, policy)
        ours = claim["predicate"]["shipyard"]
        held = signed_verdicts(registry, [signer.public], _path(unit.repository), unit.digest).get(gate)
        if held is not None and all(held.get(k) == ours[k] for k in ("release", "revision", "policy", "result")):
            return False  # the same verdict is already signed: a gate run again adds nothing
        push_attestation(registry, _path(unit.repository), unit.digest, claim, signer, label=gate)
        return True

    wanted = list(keys if keys is not None else record.units)
    with ThreadPoolExecutor(max_workers=PARALLEL_UNITS) as pool:
        attested = [key for key, done in zip(wanted, pool.map(attest, wanted), strict=True) if done]
    if attested:
        emit(
            Event(
                "verdict.signed",
                f"{gate}: signed verdicts attached to {len(attested)} unit(s) ({signer.public.key_id[:19]}…)",
            )
        )
    return attested


def signed_verdicts(
    registry: RegistryClient, trusted: Iterable[PublicKey], path: str, digest: str
) -> dict[str, dict[str, Any]]:
    """gate -> shipyard's part of the newest trusted, passing verdict for the image ``path@digest``.

    Read newest first, and only until every gate has one: a digest reused by many releases carries a
    verdict of each, and the layers labelled with a gate already found are not read."""
    found: dict[str, dict[str, Any]] = {}
    for _, statement_ in newest_statements(registry, path, digest, list(trusted), VSA, skip=found.__contains__):
        predicate = statement_.get("predicate") or {}
        ours = predicate.get("shipyard") or {}
        gate = ours.get("gate")
        if predicate.get("verificationResult") == "PASSED" and gate in GATES and gate not in found:
            found[str(gate)] = ours
            if len(found) == len(GATES):
                break
    return found
