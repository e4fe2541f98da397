"""One shape for the gates: verify, scan and canary are each a ``Gate`` listed in ``GATES`` (its name, policy,
``run`` storing typed verdicts in the record, ``conclude`` raising its failure). ``run_gate`` is the one way
through a gate and this module the one place verdicts are signed: after they are stored and before the
failure is raised, so each unit that passed is signed even when another failed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from ...events import Emit
from ...oci.client import RegistryClient
from ...oci.signing import SigningKey
from ...record import ReleaseRecord, load_record
from ...verdicts import GateName
from .canary import CanaryGate
from .scan import ScanGate
from .verdicts import attest_gate, attest_models
from .verify import VerifyGate

R = TypeVar("R")


class Gate(Protocol[R]):
    """run → a typed result (``R``) with the verdicts in the record → signed (by ``run_gate``) → concluded."""

    name: ClassVar[GateName]

    def policy(self) -> Mapping[str, Any]:
        """What the gate held the units to, as its signed verdicts state it."""
        ...

    def model_policy(self) -> Mapping[str, Any] | None:
        """What it held the release's models to; None: the gate does not judge models."""
        ...

    def run(self, record_path: Path, emit: Emit) -> R:
        """Judge every unit (and model) of the record at ``record_path`` and store the verdicts in it."""
        ...

    def conclude(self, result: R, emit: Emit) -> R:
        """Report ``result``; raise the gate's failure (``VerifyFailed``, ``ScanFailed``, ``CanaryFailed``)."""
        ...


GATES: dict[GateName, type[Gate[Any]]] = {"verify": VerifyGate, "scan": ScanGate, "canary": CanaryGate}


@dataclass(frozen=True)
class Signing:
    """Who signs the verdicts (None: nobody, they are only recorded) and the registry they are attached in,
    opened only when there is something to sign."""

    key: SigningKey | None
    registry: Callable[[], AbstractContextManager[RegistryClient]]


def run_gate(gate: Gate[R], record_path: Path, emit: Emit, signing: Signing | None = None) -> R:
    """Run ``gate`` on the release at ``record_path``: its verdicts stored, each passed one signed (with
    ``signing``), then its result concluded (its failure raised)."""
    result = gate.run(record_path, emit)
    if signing is not None and signing.key is not None:
        sign_verdicts(gate, load_record(record_path), signing.key, signing.registry, emit)
    return gate.conclude(result, emit)


def sign_verdicts(
    gate: Gate[Any],
    record: ReleaseRecord,
    key: SigningKey,
    registry: Callable[[], AbstractContextManager[RegistryClient]],
    emit: Emit,
) -> list[str]:
    """Sign and attach the passed verdicts of ``gate`` in ``record``, of units and (when it judges them)
    models; the units and models attested."""
    with registry() as client:
        attested = attest_gate(client, key, record, gate.name, gate.policy(), emit)
        model_policy = gate.model_policy()
        if model_policy is not None:
            attested += attest_models(client, key, record, gate.name, model_policy, emit)
    return attested
