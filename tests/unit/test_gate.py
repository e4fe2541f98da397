"""One Gate shape: run → typed verdicts in the record → signed (in gate.py alone) → concluded, on a memory registry."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

import pytest

from shipyard.config.registry import parse_registry
from shipyard.errors import ConfigError, ScanFailed
from shipyard.events import Emit, Event
from shipyard.oci.client import RegistryClient
from shipyard.oci.signing import SigningKey
from shipyard.record import load_record, write_atomic
from shipyard.release.gates.checks import Reads, UnitImage, run_checks
from shipyard.release.gates.gate import GATES, Signing, run_gate
from shipyard.release.gates.verdicts import signed_verdicts
from shipyard.verdicts import GateName, ScanVerdict
from tests.memregistry import MemoryRegistry
from tests.unit.test_promote import release

KEY = SigningKey.generate()


class Judged:
    """A gate of the shape that passes cpu/svc and fails pc2/svc (or, with ``error``, stops before any verdict)."""

    name: ClassVar[GateName] = "scan"

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.steps: list[str] = []

    def policy(self) -> dict[str, Any]:
        return {"severity": "CRITICAL"}

    def model_policy(self) -> dict[str, Any] | None:
        return None

    def run(self, record_path: Path, emit: Emit) -> list[str]:
        self.steps.append("run")
        if self.error is not None:
            raise self.error
        record = load_record(record_path)
        for key, unit in record.units.items():
            unit.verdicts.scan = ScanVerdict(passed=key == "cpu/svc", blocking=[] if key == "cpu/svc" else ["CVE-1"])
        write_atomic(record_path, record.to_json())
        return ["pc2/svc"]

    def conclude(self, result: list[str], emit: Emit) -> list[str]:
        self.steps.append("conclude")
        if result:
            raise ScanFailed(f"scan: {', '.join(result)} blocked")
        return result


@pytest.fixture
def world(tmp_path: Path) -> tuple[MemoryRegistry, RegistryClient, Path]:
    memory = MemoryRegistry()
    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=memory.transport())
    path = tmp_path / "r.json"
    write_atomic(path, release(memory, "20250111-aaaaaaaa", verdicts={}).to_json())
    return memory, client, path


def test_every_gate_is_a_member_of_the_one_shape() -> None:
    assert list(GATES) == ["verify", "scan", "canary"]
    assert all(gate.name == name for name, gate in GATES.items())


def test_the_passed_verdicts_are_signed_before_the_gates_failure_is_raised(world) -> None:  # type: ignore[no-untyped-def]
    _, client, path = world
    gate, events, opened = Judged(), [], []

    def registry() -> AbstractContextManager[RegistryClient]:
        opened.append(gate.steps[-1])  # between run and conclude
        return nullcontext(client)

    with pytest.raises(ScanFailed, match="pc2/svc blocked"):
        run_gate(gate, path, events.append, Signing(KEY, registry))
    assert gate.steps == ["run", "conclude"] and opened == ["run"]
    record = load_record(path)
    for key, signed in (("cpu/svc", {"scan"}), ("pc2/svc", set())):  # a failed verdict is never signed
        unit = record.units[key]
        held = signed_verdicts(client, [KEY.public], f"acme/{key}", unit.digest)
        assert set(held) == signed, key
    held = signed_verdicts(client, [KEY.public], "acme/cpu/svc", record.units["cpu/svc"].digest)["scan"]
    assert held.policy == {"severity": "CRITICAL"} and held.result == record.units["cpu/svc"].verdicts.to_dict()["scan"]
    assert [e.kind for e in events] == ["verdict.signed"]


def test_a_gate_that_stopped_before_its_verdicts_signs_nothing(world) -> None:  # type: ignore[no-untyped-def]
    _, client, path = world
    gate = Judged(ConfigError("no trivy DB"))
    never = Signing(KEY, lambda: pytest.fail("the registry was opened to sign"))  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError):
        run_gate(gate, path, lambda event: None, never)
    assert gate.steps == ["run"]


def test_without_a_signing_key_the_verdicts_are_only_recorded(world) -> None:  # type: ignore[no-untyped-def]
    memory, client, path = world
    before = dict(memory.tags)
    with pytest.raises(ScanFailed):
        run_gate(Judged(), path, lambda event: None, Signing(None, lambda: nullcontext(client)))
    assert memory.tags == before
    assert json.loads(path.read_text())["units"]["cpu/svc"]["verdicts"]["scan"]["passed"] is True


def test_an_image_held_to_no_check_has_not_passed(world) -> None:  # type: ignore[no-untyped-def]
    memory, client, path = world
    unit = load_record(path).units["cpu/svc"]
    image = UnitImage("cpu/svc", unit, "acme/cpu/svc", None, {}, None)  # type: ignore[arg-type]
    (finding,) = run_checks((), image, Reads.of(client, "localhost:5000"))
    assert (finding.check, finding.status) == ("checks", "fail")


def test_events_are_emitted_as_before(world) -> None:  # type: ignore[no-untyped-def]
    """``Event`` is what the gate emits; the CLI decides how it looks (the signed line names the key)."""
    _, client, path = world
    events: list[Event] = []
    with pytest.raises(ScanFailed):
        run_gate(Judged(), path, events.append, Signing(KEY, lambda: nullcontext(client)))
    assert events[0].message == f"scan: signed verdicts attached to 1 unit(s) ({KEY.public.key_id[:19]}…)"
