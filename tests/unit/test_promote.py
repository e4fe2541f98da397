from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.config.registry import parse_registry
from shipyard.errors import ConfigError, PromoteRefused
from shipyard.events import Emit, Event
from shipyard.oci.client import RegistryClient
from shipyard.oci.signing import SigningKey
from shipyard.record import ReleaseRecord, UnitRecord
from shipyard.release.channels.ledger import load_ledger
from shipyard.release.channels.promote import Promoter, Seams, gate_problems
from shipyard.verdicts import CanaryVerdict
from tests.memregistry import MemoryRegistry

OCI = "application/vnd.oci.image.manifest.v1+json"
PASSED = {"verify": {"passed": True}, "scan": {"passed": True}}
KEY = SigningKey.generate()


def manifest(name: str) -> bytes:
    # deliberately not canonical JSON: a re-serialising promoter would change the digest
    return json.dumps({"schemaVersion": 2, "mediaType": OCI, "annotations": {"n": name}}, indent=3).encode()


def release(
    reg: MemoryRegistry,
    tag: str,
    *,
    canary: bool = True,
    units: tuple[str, ...] = ("cpu/svc", "pc2/svc"),
    verdicts: dict[str, object] | None = None,
) -> ReleaseRecord:
    record = ReleaseRecord(
        release=tag, revision="a" * 40, created="2025-01-11T00:00:00Z", registry="localhost:5000/acme"
    )
    for key in units:
        digest = reg.put(f"acme/{key}", tag, manifest(f"{key}@{tag}"), OCI)
        record.units[key] = UnitRecord(
            profile=key.split("/")[0],
            image="svc",
            kind="service",
            platform="linux/amd64",
            repository=f"localhost:5000/acme/{key}",
            tag=tag,
            digest=digest,
            size=1,
            parent="p@sha256:x",
            duration_s=0,
            steps=1,
            cache_hits=0,
            verdicts=dict(verdicts if verdicts is not None else PASSED),
        )
    if canary:
        record.units[units[0]].verdicts.canary = CanaryVerdict(passed=True)
    return record


def promoter_on(reg: MemoryRegistry, locks: Path, emit: Emit = lambda _: None, key: SigningKey = KEY) -> Promoter:
    """A promoter on the memory registry that signs with ``key`` and trusts it, locks in ``locks``."""
    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=reg.transport())
    seams = Seams(
        lock_dir=locks,
        settle_s=1.0,  # as against a registry other machines reach too (the protocol under test)
        sleep=lambda _: None,
        policy=gate_problems,  # the record's verdicts: these tests are about moving tags (trust: test_trust.py)
    )
    return Promoter(client, "acme", emit, signer=key, trusted=(key.public,), seams=seams)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[MemoryRegistry, Promoter, list[Event]]:
    reg = MemoryRegistry()
    events: list[Event] = []
    return reg, promoter_on(reg, tmp_path / "locks", events.append), events


def test_promotion_puts_the_exact_manifest_bytes_under_the_channel(setup) -> None:  # type: ignore[no-untyped-def]
    reg, promoter, _ = setup
    record = release(reg, "20250111-aaaaaaaa")
    assert promoter.promote(record, "stable", record.units) == 2
    for key, unit in record.units.items():
        assert reg.tags[(f"acme/{key}", "stable")] == unit.digest
    puts = [p for m, p in reg.requests if m == "PUT" and "/manifests/stable" in p]
    # ledger entry in-progress first, then the tags, then the ledger entry complete
    ledger_put = "/v2/acme/shipyard-ledger/manifests/stable"
    assert puts[0] == ledger_put and puts[-1] == ledger_put  # the tags move (in parallel) in between
    assert sorted(puts[1:-1]) == ["/v2/acme/cpu/svc/manifests/stable", "/v2/acme/pc2/svc/manifests/stable"]
    assert not any("/blobs/sha256:" in p and m == "GET" for m, p in reg.requests if "ledger" not in p)
    ledger = load_ledger(promoter.registry, "acme", "stable")
    assert [(e.action, e.release, e.state) for e in ledger.entries] == [("promote", "20250111-aaaaaaaa", "complete")]


def test_promoting_twice_changes_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    reg, promoter, events = setup
    record = release(reg, "20250111-aaaaaaaa")
    promoter.promote(record, "stable", record.units)
    before = len([r for r in reg.requests if r[0] == "PUT"])
    assert promoter.promote(record, "stable", record.units) == 0
    assert len([r for r in reg.requests if r[0] == "PUT"]) == before
    assert events[-1].kind == "promote.noop" and "nothing changed" in events[-1].message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"canary": False}, "no canary verdict"),
        ({"verdicts": {"verify": {"passed": False}, "scan": {"passed": True}}}, "cpu/svc: verify failed"),
        ({"verdicts": {"verify": {"passed": True}}}, "cpu/svc: no scan verdict"),
    ],
)
def test_refused_without_passing_verdicts_and_nothing_moves(setup, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    reg, promoter, _ = setup
    record = release(reg, "20250111-aaaaaaaa", **kwargs)
    with pytest.raises(PromoteRefused, match=message):
        promoter.promote(record, "stable", record.units)
    assert not any(tag == "stable" for _, tag in reg.tags)


def test_force_needs_a_reason_which_is_recorded(setup) -> None:  # type: ignore[no-untyped-def]
    reg, promoter, events = setup
    record = release(reg, "20250111-aaaaaaaa", canary=False)
    with pytest.raises(ConfigError, match="--force needs --reason"):
        promoter.promote(record, "stable", record.units, force=True)
    promoter.promote(record, "stable", record.units, force=True, reason="hotfix for incident 42")
    entry = load_ledger(promoter.registry, "acme", "stable").entries[-1]
    assert entry.forced and entry.reason == "hotfix for incident 42"
    forced = [e.message for e in events if e.kind == "promote.forced"]
    assert len(forced) == 1 and forced[0].startswith("promote 20250111-aaaaaaaa to stable: forced past 1 problem(s): ")


def test_interrupted_promotion_is_visible_and_finished_by_promoting_again(setup) -> None:  # type: ignore[no-untyped-def]
    reg, promoter, events = setup
    record = release(reg, "20250111-aaaaaaaa")
    real_put = promoter.registry.put_manifest
    calls = {"n": 0}

    def crash_on_second_unit(repo: str, ref: str, raw: bytes, media_type: str) -> str:
        if ref == "stable" and "pc2" in repo:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real_put(repo, ref, raw, media_type)

    promoter.registry.put_manifest = crash_on_second_unit  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        promoter.promote(record, "stable", record.units)
    assert load_ledger(promoter.registry, "acme", "stable").entries[-1].state == "in-progress"
    promoter.registry.put_manifest = real_put  # type: ignore[method-assign]
    promoter.promote(record, "stable", record.units)
    entries = load_ledger(promoter.registry, "acme", "stable").entries
    assert [e.state for e in entries] == ["complete"]  # the same entry, finished
    assert any(e.kind == "promote.resume" for e in events)
    assert reg.tags[("acme/pc2/svc", "stable")] == record.units["pc2/svc"].digest


def test_rollback_restores_the_previous_digests(setup) -> None:  # type: ignore[no-untyped-def]
    reg, promoter, _ = setup
    with pytest.raises(PromoteRefused, match="--channel stable: nothing to roll back: no promotion in"):
        promoter.rollback("stable")
    first = release(reg, "20250111-aaaaaaaa")
    second = release(reg, "20250112-bbbbbbbb")
    promoter.promote(first, "stable", first.units)
    with pytest.raises(PromoteRefused, match="20250111-aaaaaaaa is the only release in its history"):
        promoter.rollback("stable")
    promoter.promote(second, "stable", second.units)
    entry = promoter.rollback("stable")
    assert entry.release == first.release and entry.action == "rollback"
    for key, unit in first.units.items():
        assert reg.tags[(f"acme/{key}", "stable")] == unit.digest


def test_gate_problems_lists_every_unit() -> None:
    record = release(MemoryRegistry(), "t", verdicts={})
    assert gate_problems(record, record.units) == [
        "cpu/svc: no verify verdict",
        "cpu/svc: no scan verdict",
        "pc2/svc: no verify verdict",
        "pc2/svc: no scan verdict",
    ]


def test_channel_names_are_checked(setup) -> None:  # type: ignore[no-untyped-def]
    reg, promoter, _ = setup
    record = release(reg, "t")
    with pytest.raises(ConfigError, match="--channel: 'Stable!'"):
        promoter.promote(record, "Stable!", record.units)


def test_the_settle_time_is_none_on_a_loopback_registry_and_one_second_elsewhere() -> None:
    from shipyard.errors import ConfigError
    from shipyard.release.channels.promote import settle_seconds

    assert settle_seconds(parse_registry("localhost:5000/acme"), {}) == 0.0
    assert settle_seconds(parse_registry("127.0.0.1:5000/acme"), {}) == 0.0
    assert settle_seconds(parse_registry("ghcr.io/acme"), {}) == 1.0
    assert settle_seconds(parse_registry("localhost:5000/acme"), {"SHIPYARD_LEDGER_SETTLE_S": "1.5"}) == 1.5
    for bad in ("soon", "-1", "600"):
        with pytest.raises(ConfigError, match=rf"^SHIPYARD_LEDGER_SETTLE_S='{bad}': expected seconds between 0 and 60"):
            settle_seconds(parse_registry("ghcr.io/acme"), {"SHIPYARD_LEDGER_SETTLE_S": bad})


def test_a_loopback_promotion_waits_for_no_settle(tmp_path: Path) -> None:
    reg = MemoryRegistry()
    naps: list[float] = []
    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=reg.transport())
    seams = Seams(lock_dir=tmp_path, sleep=naps.append, policy=gate_problems)
    promoter = Promoter(client, "acme", lambda _: None, signer=KEY, trusted=(KEY.public,), seams=seams)
    record = release(reg, "20250111-aaaaaaaa")
    promoter.promote(record, "stable", record.units)
    assert naps == [] and promoter.entry is not None and promoter.entry.state == "complete"


def test_a_tag_another_promotion_moved_during_the_moves_is_put_back(setup) -> None:  # type: ignore[no-untyped-def]
    reg, promoter, events = setup
    record = release(reg, "20250111-aaaaaaaa")
    intruder = reg.put("acme/cpu/svc", "elsewhere", manifest("intruder"), OCI)
    move, moved = promoter._move, []

    def move_then_overwritten(channel, m) -> None:  # type: ignore[no-untyped-def]
        move(channel, m)
        moved.append(m.unit)
        if moved.count("cpu/svc") == 1 and m.unit == "cpu/svc":  # another machine's promotion lands on it
            reg.tags[("acme/cpu/svc", channel)] = intruder

    promoter._move = move_then_overwritten
    promoter.promote(record, "stable", record.units)
    assert reg.tags[("acme/cpu/svc", "stable")] == record.units["cpu/svc"].digest
    assert [e.message.split(":")[0] for e in events if e.kind == "promote.repair"] == ["cpu/svc"]


def test_a_loopback_promotion_reads_no_tag_back(tmp_path: Path) -> None:
    """Without another machine (no settle), each PUT's answer is the check: one HEAD per tag, before."""
    reg = MemoryRegistry()
    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=reg.transport())
    seams = Seams(lock_dir=tmp_path, policy=gate_problems)
    promoter = Promoter(client, "acme", lambda _: None, signer=KEY, trusted=(KEY.public,), seams=seams)
    record = release(reg, "20250111-aaaaaaaa")
    assert promoter.promote(record, "stable", record.units) == 2
    heads = [p for m, p in reg.requests if m == "HEAD" and p.endswith("/svc/manifests/stable")]
    assert sorted(heads) == ["/v2/acme/cpu/svc/manifests/stable", "/v2/acme/pc2/svc/manifests/stable"]
    assert all(reg.tags[(f"acme/{k}", "stable")] == u.digest for k, u in record.units.items())
