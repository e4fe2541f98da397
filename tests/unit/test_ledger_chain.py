"""Signed, chained channel ledgers and concurrent promotions, against the memory registry.

The chain verifies; a past entry rewritten, signed by an untrusted key, or moved to another channel is
named; a ledger of an older shipyard still loads and verifies as unsigned (exit 15 from the CLI); a
promotion refuses, before any tag moved, when the ledger's head moved under it; another promotion's fresh
in-progress entry is waited for; this machine's lock serializes promotions of one channel.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import threading
from pathlib import Path

import pytest

from shipyard.cli.main import main
from shipyard.config.registry import parse_registry
from shipyard.errors import LedgerBroken, PromoteRefused
from shipyard.events import Event
from shipyard.oci.artifacts import push_document
from shipyard.oci.client import RegistryClient
from shipyard.oci.signing import SigningKey
from shipyard.record import save_record
from shipyard.release.channels import promote as promote_module
from shipyard.release.channels.ledger import (
    LEDGER_TYPE,
    Entry,
    Ledger,
    entry_hash,
    ledger_head,
    ledger_repository,
    load_ledger,
    save_ledger,
    verify_ledger,
)
from shipyard.release.channels.promote import Promoter, lock_path
from tests.memregistry import MemoryRegistry
from tests.unit.test_promote import KEY, promoter_on, release

A, B, C = "20250111-aaaaaaaa", "20250112-bbbbbbbb", "20250113-cccccccc"
OTHER = SigningKey.generate()  # a key nobody trusts


def client(reg: MemoryRegistry) -> RegistryClient:
    return RegistryClient(parse_registry("localhost:5000/acme"), transport=reg.transport())


def put(promoter: Promoter, reg: MemoryRegistry, tag: str) -> int:
    """Promote release ``tag`` to stable, forced: these tests are about the ledger, not the gates."""
    record = release(reg, tag)
    return promoter.promote(record, "stable", record.units, force=True, reason="ledger test")


def channel_tags(reg: MemoryRegistry, channel: str = "stable") -> dict[str, str]:
    return {repo: digest for (repo, tag), digest in reg.tags.items() if tag == channel and "ledger" not in repo}


def rewrite(reg: MemoryRegistry, change: dict[int, dict[str, object]], *, channel: str = "stable") -> None:
    """Edit entries of the ledger in the registry, as someone with push access but no key would."""
    ledger = load_ledger(client(reg), "acme", channel)
    for index, fields in change.items():
        ledger.entries[index] = dataclasses.replace(ledger.entries[index], **fields)  # type: ignore[arg-type]
    save_ledger(client(reg), "acme", ledger)


@pytest.fixture
def reg() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
def three(reg: MemoryRegistry, tmp_path: Path) -> Promoter:
    """stable: A promoted, B promoted, rolled back to A: three entries, signed by KEY."""
    promoter = promoter_on(reg, tmp_path / "locks")
    put(promoter, reg, A)
    put(promoter, reg, B)
    promoter.rollback("stable")
    return promoter


def test_entries_are_signed_and_chained_and_the_chain_verifies(reg: MemoryRegistry, tmp_path: Path) -> None:
    promoter = promoter_on(reg, tmp_path / "locks")
    heads = []
    for tag in (A, B):
        heads.append(ledger_head(promoter.registry, "acme", "stable"))
        put(promoter, reg, tag)
    ledger = load_ledger(promoter.registry, "acme", "stable")
    first, second = ledger.entries
    assert (first.extends, first.follows) == ("", "")
    # the second extends the manifest the first left (complete), and follows the first's hash
    assert heads == ["", second.extends] and second.follows == entry_hash(first)
    assert {first.key_id, second.key_id} == {KEY.public.key_id}
    assert ledger.head == ledger_head(promoter.registry, "acme", "stable") != second.extends
    assert verify_ledger(ledger, [KEY.public]) == [KEY.public.key_id]
    # the document keeps its shape: the old fields, plus the four new ones; key ids only, never a key
    document = json.loads(ledger.to_json())
    assert set(document["entries"][0]) == {
        *("action", "at", "by", "digests", "forced", "previous", "reason", "release", "state"),
        *("extends", "follows", "key_id", "signature"),
    }
    assert "PRIVATE" not in ledger.to_json().decode()
    assert str(KEY._key.private_numbers().private_value) not in ledger.to_json().decode()


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"release": "20250101-evil0000"}, "signature does not verify with a trusted key (changed after sha256:"),
        ({"digests": {"cpu/svc": "sha256:" + "e" * 64}}, "signature does not verify with a trusted key"),
        ({"reason": "nothing to see"}, "signature does not verify with a trusted key"),
        ({"signature": ""}, "unsigned"),
    ],
)
def test_a_past_entry_rewritten_is_named(
    reg: MemoryRegistry, three: Promoter, fields: dict[str, object], problem: str
) -> None:
    rewrite(reg, {1: fields})
    ledger = load_ledger(three.registry, "acme", "stable")
    with pytest.raises(LedgerBroken) as broken:
        verify_ledger(ledger, [KEY.public])
    entry = ledger.entries[1]
    described = f"{entry.at} promote {entry.release} by {entry.by}"
    assert str(broken.value).startswith(f"stable: ledger entry 2 ({described}): {problem}")
    assert broken.value.exit_code == 15 and "\n" not in str(broken.value)


def test_a_past_entry_re_signed_with_a_trusted_key_breaks_the_next_link(reg: MemoryRegistry, three: Promoter) -> None:
    ledger = load_ledger(three.registry, "acme", "stable")
    ledger.entries[1].release = "20250101-evil0000"
    forged = Ledger("stable", ledger.entries[:2])
    forged.sign_last(KEY)  # the key holder rewrites history: the entry verifies, the next link does not
    save_ledger(three.registry, "acme", Ledger("stable", [*forged.entries, ledger.entries[2]]))
    with pytest.raises(
        LedgerBroken,
        match=r"^stable: ledger entry 3 \(.* rollback 20250111-aaaaaaaa by .*\): "
        r"does not follow entry 2$",
    ):
        verify_ledger(load_ledger(three.registry, "acme", "stable"), [KEY.public])


def test_an_entry_dropped_from_the_middle_breaks_the_chain(reg: MemoryRegistry, three: Promoter) -> None:
    ledger = load_ledger(three.registry, "acme", "stable")
    del ledger.entries[1]
    save_ledger(three.registry, "acme", ledger)
    with pytest.raises(LedgerBroken, match="ledger entry 2 .*: does not follow entry 1$"):
        verify_ledger(load_ledger(three.registry, "acme", "stable"), [KEY.public])


def test_an_entry_signed_by_an_untrusted_key_is_named(reg: MemoryRegistry, three: Promoter, tmp_path: Path) -> None:
    intruder = promoter_on(reg, tmp_path / "locks", key=OTHER)  # trusts itself, nobody else does
    put(intruder, reg, C)
    ledger = load_ledger(three.registry, "acme", "stable")
    assert verify_ledger(ledger, [KEY.public, OTHER.public]) == [KEY.public.key_id, OTHER.public.key_id]
    with pytest.raises(LedgerBroken) as broken:
        verify_ledger(ledger, [KEY.public])
    assert f"ledger entry 4 ({ledger.entries[3].at} promote {C} by " in str(broken.value)
    assert str(broken.value).endswith(
        f"signature does not verify with a trusted key (signed by {OTHER.public.key_id[:23]}…, not trusted)"
    )


def test_an_entry_moved_to_another_channel_does_not_verify(reg: MemoryRegistry, three: Promoter) -> None:
    first = load_ledger(three.registry, "acme", "stable").entries[0]
    save_ledger(three.registry, "acme", Ledger("canary", [first]))
    with pytest.raises(LedgerBroken, match="canary: ledger entry 1 .*signature does not verify"):
        verify_ledger(load_ledger(three.registry, "acme", "canary"), [KEY.public])


LEGACY = {  # what shipyard wrote before entries were signed
    "channel": "stable",
    "entries": [
        {
            "action": "promote",
            "release": A,
            "digests": {"cpu/svc": "sha256:" + "1" * 64},
            "previous": {"cpu/svc": None},
            "at": "2025-01-11T10:00:00Z",
            "by": "ci@build-1",
            "state": "complete",
            "forced": False,
            "reason": "",
        }
    ],
}


def test_a_legacy_ledger_loads_and_verifies_as_unsigned(reg: MemoryRegistry) -> None:
    registry = client(reg)
    push_document(registry, ledger_repository("acme"), "stable", json.dumps(LEGACY).encode(), media_type=LEDGER_TYPE)
    ledger = load_ledger(registry, "acme", "stable")
    (entry,) = ledger.entries
    assert (entry.release, entry.state, entry.signature, entry.follows) == (A, "complete", "", "")
    with pytest.raises(LedgerBroken) as broken:
        verify_ledger(ledger, [KEY.public])
    assert str(broken.value).startswith(
        f"stable: ledger entry 1 (2025-01-11T10:00:00Z promote {A} by ci@build-1): unsigned"
    )


def test_rollback_restores_only_what_the_ledger_vouches_for(reg: MemoryRegistry, tmp_path: Path) -> None:
    promoter = promoter_on(reg, tmp_path / "locks")
    push_document(
        promoter.registry, ledger_repository("acme"), "stable", json.dumps(LEGACY).encode(), media_type=LEDGER_TYPE
    )  # entry 1: A, by an older shipyard
    put(promoter, reg, B)  # entry 2 follows it
    entries = load_ledger(promoter.registry, "acme", "stable").entries
    assert entries[1].follows == entry_hash(entries[0]) and entries[1].extends
    with pytest.raises(LedgerBroken, match=r"^stable: ledger entry 1 \(.*\): unsigned .*; rollback refused"):
        promoter.rollback("stable")  # it would restore the unsigned entry's digests
    put(promoter, reg, C)  # entry 3
    assert promoter.rollback("stable").release == B  # entries 2-3 verify: the unsigned entry 1 is not needed
    put(promoter, reg, C)  # entry 5
    rewrite(reg, {3: {"digests": {"cpu/svc": "sha256:" + "e" * 64, "pc2/svc": "sha256:" + "f" * 64}}})
    before = channel_tags(reg)
    with pytest.raises(LedgerBroken, match=r"^stable: ledger entry 4 \(.* rollback .*signature does not verify"):
        promoter.rollback("stable")  # entry 4's digests, rewritten, would be restored
    assert channel_tags(reg) == before


def test_history_verify_from_the_cli(
    reg: MemoryRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shipyard.cli.shared.RegistryClient", lambda target, credentials=None: client(reg))
    monkeypatch.setenv("SHIPYARD_REGISTRY", "localhost:5000/acme")
    monkeypatch.setenv("SHIPYARD_STATE_DIR", str(tmp_path / "state"))  # the development key pair is made there
    monkeypatch.setattr(promote_module, "SETTLE_S", 0.2)  # the memory registry answers in microseconds
    for name in ("SHIPYARD_SIGNING_KEY", "SHIPYARD_SIGNING_KEY_PEM", "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    project = ["--project", str(tmp_path)]  # no shipyard.toml: the local registry's development key
    for tag in (A, B):
        save_record(tmp_path, release(reg, tag))
        assert main([*project, "promote", tag, "--channel", "stable", "--force", "--reason", "test"]) == 0
    capsys.readouterr()
    assert main([*project, "history", "--channel", "stable", "--verify"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    key = load_ledger(client(reg), "acme", "stable").entries[0].key_id
    assert out == f"stable: 2 entries, chain and signatures verify (keys: {key[:23]}… (development key))"
    assert main([*project, "history", "--channel", "stable", "--verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"channel": "stable", "entries": 2, "verified": True, "keys": [key]}
    rewrite(reg, {0: {"digests": {"cpu/svc": "sha256:" + "e" * 64, "pc2/svc": "sha256:" + "f" * 64}}})
    assert main([*project, "history", "--channel", "stable", "--verify"]) == 15
    err = capsys.readouterr().err
    assert err.startswith("shipyard: error: stable: ledger entry 1 (") and f" promote {A} by " in err
    assert "signature does not verify with a trusted key" in err and err.count("\n") == 1
    # an older shipyard's ledger: unsigned, exit 15
    push_document(client(reg), ledger_repository("acme"), "legacy", json.dumps(LEGACY).encode(), media_type=LEDGER_TYPE)
    assert main([*project, "history", "--channel", "legacy", "--verify"]) == 15
    assert "legacy: ledger entry 1 (2025-01-11T10:00:00Z promote" in capsys.readouterr().err
    assert main([*project, "history", "--channel", "legacy"]) == 0  # without --verify it is shown as before
    assert "ci@build-1" in capsys.readouterr().out


# --- concurrency: the optimistic check, the wait for an in-progress entry, the host lock -------------------------


def other_machine_promotes(reg: MemoryRegistry, tag: str) -> None:
    """What a promotion from another machine leaves in the ledger: its complete entry appended."""
    registry = client(reg)
    ledger = load_ledger(registry, "acme", "stable")
    ledger.append(Entry("promote", tag, {}, {}, state="complete", by="ci@elsewhere"), KEY)
    save_ledger(registry, "acme", ledger)


def test_refused_before_any_tag_moved_when_the_head_moved_after_the_read(
    reg: MemoryRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    promoter = promoter_on(reg, tmp_path / "locks")
    put(promoter, reg, A)
    before = channel_tags(reg)
    reads = promoter._moves

    def read_then_other_machine_writes(channel: str, targets: dict[str, tuple[str, str]]) -> list[promote_module.Move]:
        moves = reads(channel, targets)
        other_machine_promotes(reg, C)  # between this promotion's read of the ledger and its write
        return moves

    monkeypatch.setattr(promoter, "_moves", read_then_other_machine_writes)
    with pytest.raises(PromoteRefused) as refused:
        put(promoter, reg, B)
    assert str(refused.value) == (
        f"promote {B} to stable: channel moved during the promotion; run it again "
        "(another promotion wrote the ledger after this one read it; no tag moved)"
    )
    assert refused.value.exit_code == 13
    assert channel_tags(reg) == before  # no tag moved
    entries = load_ledger(promoter.registry, "acme", "stable").entries
    assert [e.release for e in entries] == [A, C]  # nothing lost, nothing of the refused promotion
    verify_ledger(load_ledger(promoter.registry, "acme", "stable"), [KEY.public])
    monkeypatch.undo()
    put(promoter, reg, B)  # run it again: it goes through
    assert [e.release for e in load_ledger(promoter.registry, "acme", "stable").entries] == [A, C, B]


def test_of_two_writers_that_read_the_same_head_the_earlier_stops_before_any_tag_moved(
    reg: MemoryRegistry, tmp_path: Path
) -> None:
    """The window the optimistic check leaves: another machine read the head before this write landed,
    and its write lands just after. The settle wait after the write sees it, and this one stops."""
    promoter = promoter_on(reg, tmp_path / "locks")
    put(promoter, reg, A)
    before = channel_tags(reg)
    base = load_ledger(promoter.registry, "acme", "stable")  # what another machine read at the same time
    settles: list[float] = []

    def settle(seconds: float) -> None:
        settles.append(seconds)
        base.append(Entry("promote", C, {}, {}, by="ci@elsewhere"), KEY)
        save_ledger(client(reg), "acme", base)  # its write, over this one's, within the settle time

    promoter.sleep = settle
    with pytest.raises(PromoteRefused) as refused:
        put(promoter, reg, B)
    assert str(refused.value) == (
        f"promote {B} to stable: channel moved during the promotion; run it again "
        "(another promotion wrote the ledger over this one's; no tag moved)"
    )
    assert settles == [promote_module.SETTLE_S] and channel_tags(reg) == before


def slow_ledger_puts(promoter: Promoter, slow: int) -> list[float]:
    """The first ``slow`` ledger writes take 1.5 s of the promoter's clock; returns the clock."""
    now = [0.0]
    promoter.clock = lambda: now[0]
    real_put = promoter.registry.put_manifest
    count = [0]

    def put_manifest(repository: str, reference: str, raw: bytes, media_type: str) -> str:
        if "ledger" in repository:
            count[0] += 1
            if count[0] <= slow:
                now[0] += 1.5
        return real_put(repository, reference, raw, media_type)

    promoter.registry.put_manifest = put_manifest  # type: ignore[method-assign]
    return now


def test_a_write_slower_than_the_settle_time_is_written_again_within_it(reg: MemoryRegistry, tmp_path: Path) -> None:
    events: list[Event] = []
    promoter = promoter_on(reg, tmp_path / "locks")
    promoter.emit = events.append
    slow_ledger_puts(promoter, slow=2)
    put(promoter, reg, A)
    slow = [e.message for e in events if e.kind == "promote.slow"]
    assert slow == [
        f"stable: the registry took 1.5 s to store the ledger (over 1 s); writing it again ({n}/"
        f"{promote_module.WRITE_ATTEMPTS})"
        for n in (2, 3)
    ]
    assert [e.state for e in load_ledger(promoter.registry, "acme", "stable").entries] == ["complete"]
    assert len(channel_tags(reg)) == 2


def test_a_write_again_that_finds_another_promotions_head_stops(reg: MemoryRegistry, tmp_path: Path) -> None:
    promoter = promoter_on(reg, tmp_path / "locks")
    put(promoter, reg, A)
    before = channel_tags(reg)
    now = slow_ledger_puts(promoter, slow=1)
    real_head = promoter.registry.head_digest
    base = load_ledger(promoter.registry, "acme", "stable")
    looks = [0]

    def head_digest(repository: str, reference: str) -> str | None:
        if "ledger" in repository and now[0] > 0:
            looks[0] += 1
            if looks[0] == 1:  # another machine's write landed after this one's slow write
                base.append(Entry("promote", C, {}, {}, by="ci@elsewhere"), KEY)
                save_ledger(client(reg), "acme", base)
        return real_head(repository, reference)

    promoter.registry.head_digest = head_digest  # type: ignore[method-assign]
    with pytest.raises(PromoteRefused, match=r"another promotion wrote the ledger after this one read it; no tag"):
        put(promoter, reg, B)
    assert channel_tags(reg) == before


def test_a_registry_always_slower_than_the_settle_time_stops_before_any_tag_moved(
    reg: MemoryRegistry, tmp_path: Path
) -> None:
    promoter = promoter_on(reg, tmp_path / "locks")
    slow_ledger_puts(promoter, slow=promote_module.WRITE_ATTEMPTS)
    with pytest.raises(
        PromoteRefused, match=r"took over 1 s to store the ledger 8 times, last 1\.5 s: too long .*no tag moved"
    ):
        put(promoter, reg, A)
    assert not channel_tags(reg)
    slow_ledger_puts(promoter, slow=0)
    put(promoter, reg, A)  # run again, it finishes the entry left in progress
    assert [e.state for e in load_ledger(promoter.registry, "acme", "stable").entries] == ["complete"]
    assert len(channel_tags(reg)) == 2


def test_another_promotions_fresh_in_progress_entry_is_waited_for(reg: MemoryRegistry, tmp_path: Path) -> None:
    events: list[Event] = []
    naps: list[float] = []
    registry = client(reg)
    ledger = Ledger("stable")
    ledger.append(Entry("promote", C, {}, {}, by="ci@elsewhere"), KEY)  # in progress on another machine, now
    save_ledger(registry, "acme", ledger)

    def nap(seconds: float) -> None:
        if seconds == promote_module.SETTLE_S:
            return
        naps.append(seconds)
        if len(naps) == 3:  # the other machine finishes
            other = load_ledger(registry, "acme", "stable")
            other.entries[-1].state = "complete"
            other.sign_last(KEY)
            save_ledger(registry, "acme", other)

    promoter = promoter_on(reg, tmp_path / "locks", events.append)
    promoter.sleep = nap
    put(promoter, reg, A)
    entries = load_ledger(registry, "acme", "stable").entries
    assert [(e.release, e.state) for e in entries] == [(C, "complete"), (A, "complete")]
    assert len(naps) == 3 and any(e.kind == "promote.wait" and "is in progress" in e.message for e in events)
    verify_ledger(load_ledger(registry, "acme", "stable"), [KEY.public])


def test_an_old_in_progress_entry_counts_as_interrupted_and_stays(reg: MemoryRegistry, tmp_path: Path) -> None:
    events: list[Event] = []
    registry = client(reg)
    ledger = Ledger("stable")
    ledger.append(Entry("promote", C, {}, {}, at="2025-01-01T00:00:00Z", by="ci@elsewhere"), KEY)
    save_ledger(registry, "acme", ledger)
    promoter = promoter_on(reg, tmp_path / "locks", events.append)
    promoter.sleep = lambda s: s == promote_module.SETTLE_S or pytest.fail("an entry since January is waited for")
    put(promoter, reg, A)
    entries = load_ledger(registry, "acme", "stable").entries
    assert [(e.release, e.state) for e in entries] == [(C, "in-progress"), (A, "complete")]
    assert any(e.kind == "promote.stale" for e in events)
    verify_ledger(load_ledger(registry, "acme", "stable"), [KEY.public])


def test_an_in_progress_entry_that_does_not_verify_is_not_finished_but_followed(
    reg: MemoryRegistry, tmp_path: Path
) -> None:
    record = release(reg, A)
    registry = client(reg)
    ledger = Ledger("stable")
    digests = {k: u.digest for k, u in record.units.items()}
    ledger.append(Entry("promote", A, digests, dict.fromkeys(digests), at="2025-01-01T00:00:00Z"), OTHER)
    save_ledger(registry, "acme", ledger)
    promoter_on(reg, tmp_path / "locks").promote(record, "stable", record.units, force=True, reason="t")
    entries = load_ledger(registry, "acme", "stable").entries
    assert [(e.state, e.key_id) for e in entries] == [
        ("in-progress", OTHER.public.key_id),  # never re-signed by KEY
        ("complete", KEY.public.key_id),
    ]


def test_this_machines_lock_serializes_promotions_of_a_channel(reg: MemoryRegistry, tmp_path: Path) -> None:
    events: list[Event] = []
    promoter = promoter_on(reg, tmp_path / "locks", events.append)
    path = lock_path(tmp_path / "locks", "localhost:5000", "acme", "stable")
    assert path.name.startswith("localhost_5000-acme-stable-") and path.suffix == ".lock"
    path.parent.mkdir(parents=True)
    holder = open(path, "a")  # noqa: SIM115 (another promotion on this machine, closed in nap)
    fcntl.flock(holder, fcntl.LOCK_EX)
    released = threading.Event()

    def nap(seconds: float) -> None:
        if seconds == promote_module.SETTLE_S:
            return
        assert not channel_tags(reg), "moved tags without the lock"
        holder.close()  # the other promotion finishes
        released.set()

    promoter.sleep = nap
    put(promoter, reg, A)
    assert released.is_set() and any(
        e.message == "stable: waiting for another promotion of it on this machine" for e in events
    )
    assert len(channel_tags(reg)) == 2


def test_a_lock_held_too_long_is_a_clean_refusal(reg: MemoryRegistry, tmp_path: Path) -> None:
    promoter = promoter_on(reg, tmp_path / "locks")
    path = lock_path(tmp_path / "locks", "localhost:5000", "acme", "stable")
    path.parent.mkdir(parents=True)
    with open(path, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        now = [0.0]
        promoter.clock = lambda: now[0]
        promoter.sleep = lambda s: now.__setitem__(0, now[0] + 60)
        with pytest.raises(PromoteRefused, match="another promotion of it on this machine still holds .* after 600 s"):
            put(promoter, reg, A)
    assert not channel_tags(reg) and load_ledger(promoter.registry, "acme", "stable").entries == []


def test_concurrent_promotions_from_threads_lose_nothing(reg: MemoryRegistry, tmp_path: Path) -> None:
    records = [release(reg, tag) for tag in (A, B)]
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            promoter = promoter_on(reg, tmp_path / "locks")
            for _ in range(5):
                promoter.promote(records[index], "stable", records[index].units, force=True, reason="t")
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    ledger = load_ledger(client(reg), "acme", "stable")
    verify_ledger(ledger, [KEY.public])
    last = ledger.entries[-1]
    assert all(e.state == "complete" for e in ledger.entries)
    assert {repo.removeprefix("acme/"): d for repo, d in channel_tags(reg).items()} == last.digests
