"""What may ship, from the registry alone: signatures and signed verdicts by digest, on a memory registry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shipyard.config.registry import parse_registry
from shipyard.events import Event
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import push_signature
from shipyard.oci.signing import SigningKey
from shipyard.record import ReleaseRecord
from shipyard.release.channels.trust import digest_problems, trust_problems
from shipyard.release.gates.verdicts import attest_gate, signed_verdicts
from shipyard.verdicts import CanaryVerdict
from tests.memregistry import MemoryRegistry
from tests.unit.test_promote import release

KEY = SigningKey.generate()
PASSED = {"verify": {"passed": True, "failed": []}, "scan": {"passed": True, "counts": {"HIGH": 0}}}


def signed_release(registry: RegistryClient, memory: MemoryRegistry, tag: str, key: SigningKey = KEY) -> ReleaseRecord:
    record = release(memory, tag, verdicts=PASSED)
    record.units["cpu/svc"].verdicts.canary = CanaryVerdict(passed=True, p95_ms=12.0, slo_p95_ms=250.0, logs=["x"])
    for unit in record.units.values():
        push_signature(registry, unit.repository.split("/", 1)[1], unit.digest, unit.repository, key)
    events: list[Event] = []
    for gate in ("verify", "scan", "canary"):
        attest_gate(registry, key, record, gate, {"gate": gate}, events.append)
    return record


@pytest.fixture
def registry() -> tuple[RegistryClient, MemoryRegistry]:
    memory = MemoryRegistry()
    return RegistryClient(parse_registry("localhost:5000/acme"), transport=memory.transport()), memory


def test_a_signed_and_gated_release_passes(registry) -> None:  # type: ignore[no-untyped-def]
    client, memory = registry
    record = signed_release(client, memory, "20250111-aaaaaaaa")
    assert trust_problems(client, [KEY.public], record, record.units) == []
    verdicts = signed_verdicts(client, [KEY.public], "acme/cpu/svc", record.units["cpu/svc"].digest)
    assert set(verdicts) == {"verify", "scan", "canary"} and verdicts["canary"].result["p95_ms"] == 12.0
    assert "logs" not in verdicts["canary"].result  # the statement holds figures, not container output


def test_an_untrusted_key_proves_nothing(registry) -> None:  # type: ignore[no-untyped-def]
    client, memory = registry
    record = signed_release(client, memory, "20250111-aaaaaaaa", key=SigningKey.generate())
    problems = trust_problems(client, [KEY.public], record, ["cpu/svc"])
    assert problems[0].startswith("cpu/svc: sha256:") and "has no signature by a trusted key" in problems[0]
    assert "cpu/svc: no signed verify verdict of release 20250111-aaaaaaaa for " in problems[1] and any(
        "no signed canary verdict" in p for p in problems
    )


def test_an_edited_record_finds_nothing_signed_to_match(registry) -> None:  # type: ignore[no-untyped-def]
    client, memory = registry
    good = signed_release(client, memory, "20250111-aaaaaaaa")
    other = release(memory, "20250112-bbbbbbbb", verdicts=PASSED)  # pushed, never signed nor gated
    edited = replace(good, units={**good.units, "pc2/svc": other.units["pc2/svc"]})
    problems = trust_problems(client, [KEY.public], edited, ["pc2/svc"])
    assert problems == [
        f"pc2/svc: {other.units['pc2/svc'].digest[:19]} has no signature by a trusted key",
        f"pc2/svc: no signed verify verdict of release 20250111-aaaaaaaa for {other.units['pc2/svc'].digest[:19]}",
        f"pc2/svc: no signed scan verdict of release 20250111-aaaaaaaa for {other.units['pc2/svc'].digest[:19]}",
    ]


def test_a_verdict_of_another_revision_does_not_count(registry) -> None:  # type: ignore[no-untyped-def]
    client, memory = registry
    record = signed_release(client, memory, "20250111-aaaaaaaa")
    moved = replace(record, revision="b" * 40)  # same digests, the record claims another commit
    problems = trust_problems(client, [KEY.public], moved, ["cpu/svc"])
    assert (
        "cpu/svc: the signed verify verdict for " in problems[0]
        and "is of revision aaaaaaaa, not the release's bbbbbbbb" in problems[0]
    )


def test_failed_verdicts_are_never_signed_and_a_missing_canary_is_named(registry) -> None:  # type: ignore[no-untyped-def]
    client, memory = registry
    record = release(memory, "20250111-aaaaaaaa", verdicts={"verify": {"passed": False}, "scan": {"passed": True}})
    for unit in record.units.values():
        push_signature(client, unit.repository.split("/", 1)[1], unit.digest, unit.repository, KEY)
    assert attest_gate(client, KEY, record, "verify", {}, lambda e: None) == []
    problems = trust_problems(client, [KEY.public], record, ["cpu/svc"])
    assert problems[0].startswith("cpu/svc: no signed verify verdict") and problems[1].startswith(
        "cpu/svc: no signed scan"
    )
    assert problems[-1] == "release 20250111-aaaaaaaa: no signed canary verdict (run `shipyard canary`)"
    assert trust_problems(client, [KEY.public], record, []) == ["release 20250111-aaaaaaaa: no unit to check"]
    assert trust_problems(client, [], record, ["cpu/svc"]) == ["no trusted key to check signatures with"]


def test_a_channel_digest_needs_a_signature_and_verify_and_scan(registry) -> None:  # type: ignore[no-untyped-def]
    client, memory = registry
    record = signed_release(client, memory, "20250111-aaaaaaaa")
    digest = record.units["pc2/svc"].digest
    assert digest_problems(client, [KEY.public], "pc2/svc", "acme/pc2/svc", digest) == []
    assert digest_problems(client, [SigningKey.generate().public], "pc2/svc", "acme/pc2/svc", digest)[0].endswith(
        "has no signature by a trusted key"
    )


def test_verdicts_are_read_newest_first_and_only_until_each_gate_has_one(registry) -> None:  # type: ignore[no-untyped-def]
    """A digest reused by many releases carries a verdict of each: only the newest of a gate is read."""
    client, memory = registry
    record = signed_release(client, memory, "20250111-aaaaaaaa")
    digest = record.units["cpu/svc"].digest
    for n in range(5):  # five later releases re-verify the same digest
        later = replace(record, release=f"2025011{n + 2}-aaaaaaaa")
        attest_gate(client, KEY, later, "verify", {"gate": "verify"}, lambda _: None)
    fresh = RegistryClient(parse_registry("localhost:5000/acme"), transport=memory.transport())
    memory.requests.clear()
    verdicts = signed_verdicts(fresh, [KEY.public], "acme/cpu/svc", digest)
    assert verdicts["verify"].release == "20250116-aaaaaaaa" and set(verdicts) == {"verify", "scan", "canary"}
    blobs = [p for m, p in memory.requests if m == "GET" and "/blobs/" in p]
    assert len(blobs) == 3, blobs  # the newest verify, the scan and the canary verdict; not the six verifies
    # and attesting the newest verdict again pushes nothing, reading only the newest of its gate
    newest = replace(record, release="20250116-aaaaaaaa")
    memory.requests.clear()
    assert attest_gate(fresh, KEY, newest, "verify", {"gate": "verify"}, lambda _: None) == []
    assert not [p for m, p in memory.requests if m == "PUT"]


def test_a_verdict_is_bound_to_its_release_in_either_order(registry) -> None:  # type: ignore[no-untyped-def]
    """Two releases of the same revision share a digest: each is promotable on its own verdicts, whichever
    was verified last, and a release with only the other's verdicts is refused naming both."""
    client, memory = registry
    first = signed_release(client, memory, "20250111-aaaaaaaa")
    second = replace(first, release="20250112-bbbbbbbb")  # the same digests, verified again for the second
    for gate in ("verify", "scan", "canary"):
        attest_gate(client, KEY, second, gate, {"gate": gate}, lambda event: None)
    assert trust_problems(client, [KEY.public], first, first.units) == []  # older, after the newer re-verified
    assert trust_problems(client, [KEY.public], second, second.units) == []
    digest = first.units["cpu/svc"].digest
    mine = signed_verdicts(client, [KEY.public], "acme/cpu/svc", digest, first.release)
    assert {v.release for v in mine.values()} == {first.release}
    assert signed_verdicts(client, [KEY.public], "acme/cpu/svc", digest)["verify"].release == second.release
    third = replace(first, release="20250113-cccccccc")  # never gated itself
    problems = trust_problems(client, [KEY.public], third, ["cpu/svc"])
    assert problems[0] == (
        f"cpu/svc: no signed verify verdict of release 20250113-cccccccc for {digest[:19]} (its signed verify "
        f"verdict is of release 20250112-bbbbbbbb, not of 20250113-cccccccc)"
    )
