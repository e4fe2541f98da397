"""Promotion and rollback of channel tags, by digest, through the registry API: each unit's exact manifest
bytes PUT under ``<repository>:<channel>``, every move in the channel's ledger; concurrent promotions of a
channel are kept apart by a host lock and timed checks of the ledger's head."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tenacity

from ...config.keys import machine_state_dir
from ...errors import ConfigError, LedgerBroken, PromoteRefused, RegistryError
from ...events import Emit, Event
from ...oci.client import Manifest, RegistryClient
from ...oci.reference import RegistryNamespace
from ...oci.retry import Transient
from ...oci.signing import PublicKey, SigningKey
from ...record import ReleaseRecord, UnitRecord
from .ledger import (
    Entry,
    Ledger,
    entry_hash,
    entry_problem,
    entry_time,
    ledger_head,
    ledger_manifest,
    load_ledger,
    put_ledger,
    save_ledger,
    verify_ledger,
)
from .trust import trust_problems

PARALLEL_REQUESTS = 8
POLL_S = 0.1  # between looks at a lock or a ledger that another promotion holds
SETTLE_S = 1.0  # the longest a writer's last look at the head may precede its write; waited after each write
# (a loopback registry's default is none, see settle_seconds)
IN_PROGRESS_WAIT_S = 60.0  # how long another promotion's fresh in-progress entry is waited for
WRITE_ATTEMPTS = 8  # ledger writes slower than SETTLE_S, tried again (the registry's backoff) before giving up
LOCK_TIMEOUT_S = 600.0  # how long this machine's lock of a channel is waited for
CHANNEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


def settle_seconds(target: RegistryNamespace, environ: Mapping[str, str] = os.environ) -> float:
    """How long a ledger write's look-to-answer may take, and is waited for after it.

    ``SHIPYARD_LEDGER_SETTLE_S`` when set (every machine that promotes to the registry must use the
    same); else none for a loopback registry (only this machine reaches it, and its promotions of a
    channel hold one lock), ``SETTLE_S`` for any other."""
    raw = environ.get("SHIPYARD_LEDGER_SETTLE_S", "").strip()
    if not raw:
        return 0.0 if target.is_local else SETTLE_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60:
        raise ConfigError(f"SHIPYARD_LEDGER_SETTLE_S={raw!r}: expected seconds between 0 and 60, e.g. 1.0")
    return value


def check_channel(channel: str) -> str:
    if not CHANNEL_RE.match(channel) or re.match(r"^\d{8}-", channel):
        raise ConfigError(f"--channel: {channel!r}: use a lowercase name like canary or stable (letters, digits, '-')")
    return channel


def gate_problems(record: ReleaseRecord, keys: Iterable[str]) -> list[str]:
    """What stands between this release and a channel: missing or failed verify/scan/canary verdicts, of
    the units and of the models they were released with."""
    problems, keys = [], list(keys)
    for key in keys:
        verdicts = record.units[key].verdicts
        for stage, verdict in (("verify", verdicts.verify), ("scan", verdicts.scan)):
            if verdict is None:
                problems.append(f"{key}: no {stage} verdict")
            elif not verdict.passed:
                problems.append(f"{key}: {stage} failed")
    canaries = {k: v for k, u in record.units.items() if (v := u.verdicts.canary) is not None}
    if not canaries:
        problems.append("no canary verdict (run `shipyard canary`)")
    problems += [f"{k}: canary failed ({v.reason})" for k, v in canaries.items() if not v.passed]
    for name in released_models(record, keys):
        model = record.models.get(name)
        checked = model.verdicts.verify if model is not None else None
        if checked is None:
            problems.append(f"model {name}: no verify verdict")
        elif not checked.passed:
            problems.append(f"model {name}: verify failed ({'; '.join(checked.problems)[:200]})")
    return problems


def model_targets(record: ReleaseRecord, keys: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``models/<name>`` -> (repository, digest) of the models the units ``keys`` were released with, whose
    channel tag moves with theirs; a model the build could only record (in another registry) has none."""
    found = {}
    for name, digest in released_models(record, keys).items():
        model = record.models.get(name)
        if model is not None and model.tag:
            found[f"models/{name}"] = (model.repository, digest)
    return found


def released_models(record: ReleaseRecord, keys: Iterable[str]) -> dict[str, str]:
    """model name -> digest, of the models the units ``keys`` were released with."""
    return {name: digest for key in keys for name, digest in record.units[key].models.items()}


@dataclass(frozen=True)
class Move:
    unit: str
    repository: str  # path inside the registry
    digest: str
    before: str | None
    manifest: Manifest | None  # the bytes to PUT; None: already in place, or the registry lacks the digest


def lock_path(directory: Path, host: str, namespace: str, channel: str) -> Path:
    """The lock file of one channel of one registry namespace: readable, and unique by its hash."""
    key = f"{host}/{namespace}/{channel}"
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{host}-{namespace}-{channel}")
    return directory / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.lock"


class SlowWrite(Transient):
    """A ledger write whose look at the head and PUT took longer than the settle time: retried like a fault."""

    def __init__(self, took: float) -> None:
        super().__init__(f"the ledger write took {took:.1f} s")
        self.took = took


@dataclass(frozen=True)
class Seams:
    """What a Promoter otherwise takes from this machine, replaced by tests: where the channel locks are
    (None: the state directory's ``locks/``), the settle time (None: :func:`settle_seconds`), the waits'
    ``sleep`` and ``clock`` (monotonic, for durations), and what stands between a release and a channel
    (None: the registry's signatures and signed verdicts for the exact digests, trust.py)."""

    lock_dir: Path | None = None
    settle_s: float | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    policy: Callable[[ReleaseRecord, Iterable[str]], list[str]] | None = None


class Promoter:
    """Moves a channel's tags and records each move, signed by ``signer``, in the channel's ledger.

    ``trusted`` are the keys whose ledger entries a rollback restores and an interrupted promotion
    finishes."""

    def __init__(
        self,
        registry: RegistryClient,
        namespace: str,
        emit: Emit,
        *,
        signer: SigningKey,
        trusted: Sequence[PublicKey],
        seams: Seams | None = None,
    ) -> None:
        seams = seams or Seams()
        self.policy = seams.policy or (lambda record, keys: trust_problems(registry, trusted, record, keys))
        self.registry = registry
        self.namespace = namespace
        self.emit = emit
        self.host = registry.target.host
        self.signer = signer
        self.trusted = tuple(trusted)
        self.lock_dir = seams.lock_dir if seams.lock_dir is not None else machine_state_dir() / "locks"
        self.sleep = seams.sleep
        self.clock = seams.clock
        self.in_progress_wait_s = IN_PROGRESS_WAIT_S
        self.lock_timeout_s = LOCK_TIMEOUT_S
        self.settle_s = settle_seconds(registry.target) if seams.settle_s is None else seams.settle_s
        self.entry: Entry | None = None  # the entry the last promote or rollback wrote (or found in place)

    def _path(self, repository: str) -> str:
        """The path inside the registry: the record's repository without its host (which may be
        another name for the registry this client talks to)."""
        return repository.split("/", 1)[1]

    # --- the channel lock and the ledger's head ----------------------------------------------------
    @contextmanager
    def _locked(self, channel: str) -> Iterator[None]:
        """Hold this machine's lock of the channel: waits (up to ``lock_timeout_s``) for another
        promotion or rollback of it from this machine to finish."""
        path = lock_path(self.lock_dir, self.host, self.namespace, channel)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a") as handle:  # closing it releases the lock, however the block ends
            deadline, waiting = self.clock() + self.lock_timeout_s, False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self.clock() >= deadline:
                        raise PromoteRefused(
                            f"--channel {channel}: another promotion of it on this machine still holds {path} after "
                            f"{self.lock_timeout_s:.0f} s; run it again once that one is done"
                        ) from None
                    if not waiting:
                        waiting = True
                        self.emit(
                            Event("promote.wait", f"{channel}: waiting for another promotion of it on this machine")
                        )
                    self.sleep(POLL_S)
            yield

    def _head(self, channel: str) -> str:
        return ledger_head(self.registry, self.namespace, channel)

    def _settled(self, channel: str, resumable: Callable[[Entry], bool]) -> Ledger:
        """The ledger, once its last entry is not another promotion's fresh ``in-progress`` one.

        That entry is waited for while it is younger than ``in_progress_wait_s`` (by its own ``at``)
        and at most that long; after that it counts as interrupted and the new entry follows it."""
        deadline, announced = self.clock() + self.in_progress_wait_s, False
        while True:
            ledger = load_ledger(self.registry, self.namespace, channel)
            last = ledger.entries[-1] if ledger.entries else None
            if last is None or last.state != "in-progress" or resumable(last):
                return ledger
            number, written = len(ledger.entries), entry_time(last)
            if written is None or time.time() - written > self.in_progress_wait_s or self.clock() >= deadline:
                self.emit(
                    Event(
                        "promote.stale",
                        f"{channel}: ledger entry {number} ({last.describe()}) was left in-progress; it stays so",
                    )
                )
                return ledger
            if not announced:
                announced = True
                self.emit(
                    Event(
                        "promote.wait",
                        f"{channel}: ledger entry {number} ({last.describe()}) is in progress: waiting up to "
                        f"{self.in_progress_wait_s:.0f} s for it to finish",
                    )
                )
            while self._head(channel) == ledger.head and self.clock() < deadline:
                self.sleep(POLL_S)

    def _vouched(self, ledger: Ledger) -> bool:
        """Whether the last entry is signed by a trusted key and follows the one before it."""
        return entry_problem(ledger.channel, ledger.entries, len(ledger.entries) - 1, self.trusted) is None

    # --- moving the tags ---------------------------------------------------------------------------
    def _moves(self, channel: str, targets: dict[str, tuple[str, str]]) -> list[Move]:
        """targets: unit -> (repository, digest); where each unit's channel tag points now, asked in parallel."""

        def move(item: tuple[str, tuple[str, str]]) -> Move:
            unit, (repo, digest) = item
            path = self._path(repo)
            before = self.registry.head_digest(path, channel)
            # the bytes are fetched only for a tag that has to move
            return Move(unit, path, digest, before, None if before == digest else self.registry.manifest(path, digest))

        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
            return list(pool.map(move, targets.items()))

    def _apply(self, channel: str, ledger: Ledger, entry: Entry, moves: list[Move]) -> int:
        """Write the entry in-progress, move every tag that is not there yet, then mark it complete, with
        the ledger's head checked before and after each write (see the module's docstring).
        Every digest is known to be in the registry before the ledger or any tag is written."""
        absent = [m for m in moves if m.manifest is None and m.before != m.digest]
        if absent:
            more = f" (and {len(absent) - 1} more unit(s))" if len(absent) > 1 else ""
            raise RegistryError(
                f"{entry.release}: {absent[0].unit}: {self.host}/{absent[0].repository}@{absent[0].digest} is not "
                f"in the registry{more}; expected every digest of the release to be there (was the record edited, "
                f"or the image deleted?): nothing promoted"
            )
        what = f"{entry.action} {entry.release} to {channel}"
        moved_away = f"{what}: channel moved during the promotion; run it again"
        if not ledger.entries or ledger.entries[-1] is not entry:  # else: finishing it, already in the ledger
            self._write_in_progress(ledger, entry, moved_away)
        elif self._head(channel) != ledger.head:
            raise PromoteRefused(
                f"{moved_away} (another promotion wrote the ledger after this one read it; no tag moved)"
            )
        pending = [m for m in moves if m.before != m.digest]
        pool = ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS)
        try:
            list(pool.map(lambda m: self._move(channel, m), pending))  # list(): raise the first failure here
        finally:
            # interrupted or failed: the moves in flight finish, the queued ones never start
            pool.shutdown(wait=True, cancel_futures=True)
        number = len(ledger.entries)
        if self._head(channel) != ledger.head:
            raise PromoteRefused(
                f"{moved_away}: another promotion wrote the ledger while this one moved {len(pending)} tag(s), so "
                f"its entry {number} stays in-progress (see `shipyard history --channel {channel}`)"
            )
        if self.settle_s:  # only where another machine can write (see settle_seconds) can a tag have moved since
            self._read_back(channel, moves)
        entry.state = "complete"
        ledger.sign_last(self.signer)
        ledger.head = save_ledger(self.registry, self.namespace, ledger)
        if self._head(channel) != ledger.head:
            mine = entry_hash(entry)
            if not any(entry_hash(e) == mine for e in load_ledger(self.registry, self.namespace, channel).entries):
                raise PromoteRefused(
                    f"{what}: the tags moved, but another promotion wrote the ledger over this one's complete entry "
                    f"{number}; see `shipyard history --channel {channel}` and run it again to record it"
                )
        self.entry = entry
        return len(pending)

    def _write_in_progress(self, ledger: Ledger, entry: Entry, moved_away: str) -> None:
        """Append the entry and write the ledger only if its head is still the one read, then make sure
        no other promotion's write landed right after it; every refusal comes before any tag moved.

        The last look at the head and the PUT are at most ``settle_s`` apart, and the head is read
        again ``settle_s`` after the PUT: a writer that saw the old head before this write landed has
        written by then, so of two such writers the earlier sees the later and stops (Fischer's timed
        mutual exclusion, over the registry's reads and writes). A look and PUT slower than that is a
        transient fault of its own: tried again (the same bytes, after a look that must find this
        write's head) with the backoff and within the deadline of every registry request
        (:class:`~shipyard.oci.retry.RetryPolicy`), at most ``WRITE_ATTEMPTS`` times; then refused."""
        channel = ledger.channel
        expected = [ledger.head]  # the head this promotion read; once its own write landed, that write's
        ledger.append(entry, self.signer)
        raw = ledger_manifest(self.registry, self.namespace, ledger)  # blobs first: then one PUT

        def look_and_write() -> None:
            started = self.clock()
            if self._head(channel) != expected[0]:
                raise PromoteRefused(
                    f"{moved_away} (another promotion wrote the ledger after this one read it; no tag moved)"
                )
            ledger.head = put_ledger(self.registry, self.namespace, channel, raw)
            took = self.clock() - started
            if self.settle_s and took > self.settle_s:  # no settle: no timing is promised, none checked
                expected[0] = ledger.head
                raise SlowWrite(took)

        def again(state: tenacity.RetryCallState) -> None:
            slow = state.outcome.exception() if state.outcome else None
            took = slow.took if isinstance(slow, SlowWrite) else 0.0
            wait = state.upcoming_sleep
            self.emit(
                Event(
                    "promote.slow",
                    f"{channel}: the registry took {took:.1f} s to store the ledger (over {self.settle_s:.0f} s); "
                    f"writing it again ({state.attempt_number + 1}/{WRITE_ATTEMPTS})",
                    data={"took_s": round(took, 3), "wait_s": round(wait, 3)},
                )
            )

        retrying = self.registry.policy.retrying(sleep=self.sleep, attempts=WRITE_ATTEMPTS).copy(before_sleep=again)
        try:
            retrying(look_and_write)
        except SlowWrite as slow:
            tries = retrying.statistics.get("attempt_number", WRITE_ATTEMPTS)
            raise PromoteRefused(
                f"{moved_away} (the registry took over {self.settle_s:.0f} s to store the ledger {tries} "
                f"times, last {slow.took:.1f} s: too long to be sure no other promotion wrote at the same time; no "
                f"tag moved, entry {len(ledger.entries)} stays in-progress)"
            ) from None
        if self.settle_s:
            self.sleep(self.settle_s)
        if self._head(channel) != ledger.head:
            raise PromoteRefused(f"{moved_away} (another promotion wrote the ledger over this one's; no tag moved)")

    def _move(self, channel: str, move: Move) -> None:
        manifest = move.manifest
        assert manifest is not None  # _apply refuses moves without one
        # put_manifest checks the digest the registry stored against the bytes sent
        self.registry.put_manifest(move.repository, channel, manifest.raw, manifest.media_type)
        self.emit(Event("promote.unit", f"{move.unit}: {channel} -> {move.digest[:19]}", unit=move.unit))

    def _read_back(self, channel: str, moves: list[Move]) -> None:
        """Every tag where this promotion put it: one a concurrent promotion moved meanwhile is put back
        (this one's entry is the ledger's newest, so its digests are the channel's)."""

        def check(move: Move) -> None:
            if self.registry.head_digest(move.repository, channel) == move.digest:
                return
            manifest = move.manifest or self.registry.manifest(move.repository, move.digest)
            if manifest is None:
                raise RegistryError(f"{self.host}/{move.repository}@{move.digest} is gone from the registry")
            self.emit(Event("promote.repair", f"{move.unit}: {channel} was moved by another promotion; put back"))
            self._move(channel, Move(move.unit, move.repository, move.digest, None, manifest))

        with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
            list(pool.map(check, moves))

    # --- the two verbs -----------------------------------------------------------------------------
    def promote(
        self,
        record: ReleaseRecord,
        channel: str,
        units: dict[str, UnitRecord],
        *,
        force: bool = False,
        reason: str = "",
    ) -> int:
        check_channel(channel)
        problems = self.policy(record, units)
        if problems and not force:
            raise PromoteRefused(
                f"promote {record.release} to {channel} refused: {'; '.join(problems[:4])}"
                f"{' …' if len(problems) > 4 else ''} (or --force --reason '…')"
            )
        if force and not reason.strip():
            raise ConfigError("--force needs --reason '…': the reason is recorded in the channel's ledger")
        if problems:  # forced: said, so that whoever forces sees exactly what they step over
            self.emit(
                Event(
                    "promote.forced",
                    f"promote {record.release} to {channel}: forced past {len(problems)} problem(s): "
                    f"{'; '.join(problems[:3])}{' …' if len(problems) > 3 else ''}",
                    data={"problems": problems},
                )
            )
        targets = {k: (u.repository, u.digest) for k, u in units.items()} | model_targets(record, units)
        wanted = {k: digest for k, (_, digest) in targets.items()}
        with self._locked(channel):
            # the ledger before the tags: a promotion that moves tags after this read changes its head
            ledger = self._settled(channel, lambda e: e.release == record.release and e.digests == wanted)
            moves = self._moves(channel, targets)
            digests = {m.unit: m.digest for m in moves}
            last = ledger.entries[-1] if ledger.entries else None
            already = all(m.before == m.digest for m in moves)
            if already and last and last.state == "complete" and last.release == record.release:
                self.entry = last
                self.emit(
                    Event(
                        "promote.noop",
                        f"{channel} already points at {record.release} for all {len(moves)} units; nothing changed",
                    )
                )
                return 0
            interrupted = bool(
                last and last.state == "in-progress" and last.release == record.release and last.digests == digests
            )
            if last and interrupted and self._vouched(ledger):
                entry = last  # finish the interrupted promotion (signed again when complete)
                self.emit(
                    Event("promote.resume", f"finishing the interrupted promotion of {record.release} to {channel}")
                )
            else:
                if last and interrupted:  # never re-sign an entry this machine cannot vouch for: a new one follows
                    self.emit(
                        Event(
                            "promote.stale",
                            f"{channel}: ledger entry {len(ledger.entries)} ({last.describe()}) is in progress but "
                            f"does not verify; it stays so, and a new entry records this promotion",
                        )
                    )
                entry = Entry(
                    "promote",
                    record.release,
                    digests,
                    {m.unit: m.before for m in moves},
                    forced=force,
                    reason=reason.strip(),
                )
            moved = self._apply(channel, ledger, entry, moves)
        self.emit(
            Event(
                "promote.done",
                f"{channel} -> {record.release}: {moved} tag(s) moved, {len(moves) - moved} already there",
            )
        )
        return moved

    def rollback(self, channel: str) -> Entry:
        check_channel(channel)
        with self._locked(channel):
            ledger = self._settled(channel, lambda _: False)
            done = [i for i, e in enumerate(ledger.entries) if e.state == "complete"]
            if not done:
                raise PromoteRefused(
                    f"--channel {channel}: nothing to roll back: no promotion in {self.host}/{self.namespace}/"
                    f"shipyard-ledger; expected a channel promoted at least twice (see `shipyard history --channel "
                    f"{channel}`)"
                )
            current = ledger.entries[done[-1]]
            back = next((i for i in reversed(done[:-1]) if ledger.entries[i].release != current.release), None)
            if back is None:
                raise PromoteRefused(
                    f"--channel {channel}: nothing to roll back to: {current.release} is the only release in its "
                    f"history; expected an earlier release (see `shipyard history --channel {channel}`)"
                )
            try:  # the digests restored, and every entry since, must be signed and chained
                verify_ledger(ledger, self.trusted, start=back)
            except LedgerBroken as exc:
                raise LedgerBroken(
                    f"{exc}; rollback refused: it would restore what the ledger cannot vouch for"
                ) from None
            previous = ledger.entries[back]
            repos = {unit: self._unit_repository(unit) for unit in previous.digests}
            moves = self._moves(channel, {u: (repos[u], d) for u, d in previous.digests.items()})
            entry = Entry(
                "rollback",
                previous.release,
                dict(previous.digests),
                {m.unit: m.before for m in moves},
                reason=f"rollback from {current.release}",
            )
            moved = self._apply(channel, ledger, entry, moves)
        self.emit(
            Event("rollback.done", f"{channel} -> {previous.release} (was {current.release}): {moved} tag(s) moved")
        )
        return entry

    def _unit_repository(self, unit: str) -> str:
        return f"{self.host}/{self.namespace}/{unit}"
