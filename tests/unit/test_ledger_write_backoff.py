"""A ledger write slower than the settle time is retried like a registry fault: the backoff and deadline of
:class:`~shipyard.oci.retry.RetryPolicy` between the attempts, the head looked at before each, a moved head
refused before any tag moved."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config.registry import parse_registry
from shipyard.errors import PromoteRefused
from shipyard.events import Event
from shipyard.oci.client import RegistryClient
from shipyard.oci.retry import RetryPolicy
from shipyard.release.channels import promote as promote_module
from shipyard.release.channels.ledger import Entry, load_ledger, save_ledger
from shipyard.release.channels.promote import Promoter, Seams, gate_problems
from tests.memregistry import MemoryRegistry
from tests.unit.test_ledger_chain import A, B, C, channel_tags, client, put, slow_ledger_puts
from tests.unit.test_promote import KEY


@pytest.fixture
def reg() -> MemoryRegistry:
    return MemoryRegistry()


def promoter(reg: MemoryRegistry, tmp_path: Path, policy: RetryPolicy, naps: list[float]) -> Promoter:
    registry = RegistryClient(parse_registry("localhost:5000/acme"), transport=reg.transport(), policy=policy)
    seams = Seams(lock_dir=tmp_path / "locks", settle_s=1.0, sleep=naps.append, policy=gate_problems)
    return Promoter(registry, "acme", lambda _: None, signer=KEY, trusted=(KEY.public,), seams=seams)


def test_slow_writes_back_off_as_registry_requests_do(reg: MemoryRegistry, tmp_path: Path) -> None:
    naps: list[float] = []
    events: list[Event] = []
    subject = promoter(reg, tmp_path, RetryPolicy(backoff_s=0.25, max_wait_s=8.0), naps)
    subject.emit = events.append
    slow_ledger_puts(subject, slow=3)
    put(subject, reg, A)
    waits = [e.data["wait_s"] for e in events if e.kind == "promote.slow"]
    assert len(waits) == 3
    # exponential with jitter: 0.25·2^n plus up to 0.25, never immediately again
    for n, wait in enumerate(waits):
        assert 0.25 * 2**n <= wait <= 0.25 * 2**n + 0.25, waits
    assert naps[: len(waits)] == pytest.approx(waits, abs=1e-3)  # slept before each write again
    assert naps[len(waits)] == 1.0  # then the settle wait after the write that was quick enough
    assert [e.state for e in load_ledger(subject.registry, "acme", "stable").entries] == ["complete"]


def test_the_request_deadline_bounds_the_retries_and_nothing_moves(reg: MemoryRegistry, tmp_path: Path) -> None:
    naps: list[float] = []
    subject = promoter(reg, tmp_path, RetryPolicy(backoff_s=0.25, deadline_s=0.2), naps)
    slow_ledger_puts(subject, slow=promote_module.WRITE_ATTEMPTS)
    with pytest.raises(PromoteRefused, match=r"took over 1 s to store the ledger 1 times, last 1\.5 s: .*no tag moved"):
        put(subject, reg, A)
    assert not channel_tags(reg) and naps == []  # the first wait would pass the deadline: none
    slow_ledger_puts(subject, slow=0)
    put(subject, reg, A)  # run again: it finishes the entry left in progress
    assert [e.state for e in load_ledger(subject.registry, "acme", "stable").entries] == ["complete"]


def test_a_head_moved_during_the_backoff_is_refused_before_any_tag_moves(reg: MemoryRegistry, tmp_path: Path) -> None:
    naps: list[float] = []
    subject = promoter(reg, tmp_path, RetryPolicy(backoff_s=0.25), naps)
    put(subject, reg, A)
    before = channel_tags(reg)
    slow_ledger_puts(subject, slow=1)
    other = load_ledger(client(reg), "acme", "stable")

    def another_machine_writes_while_this_one_waits(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:  # A's settle wait, then this promotion's first backoff
            other.append(Entry("promote", C, {}, {}, state="complete", by="ci@elsewhere"), KEY)
            save_ledger(client(reg), "acme", other)

    subject.sleep = another_machine_writes_while_this_one_waits
    with pytest.raises(PromoteRefused, match=r"another promotion wrote the ledger after this one read it; no tag"):
        put(subject, reg, B)
    assert channel_tags(reg) == before
    assert [e.release for e in load_ledger(subject.registry, "acme", "stable").entries] == [A, C]
