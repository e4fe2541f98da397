"""Promotion and rollback of channel tags, by digest, through the registry API.

A promotion PUTs the exact manifest bytes (and media type) of each unit's recorded
digest under ``<repository>:<channel>``: the digest cannot change, no layer moves.
(``docker buildx imagetools create`` re-wraps manifests and changes digests.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ...errors import ConfigError, PromoteRefused, RegistryError
from ...events import Emit, Event
from ...oci.client import Manifest, RegistryClient
from ...record import ReleaseRecord, UnitRecord
from .ledger import Entry, Ledger, load_ledger, save_ledger

PARALLEL_REQUESTS = 8
CHANNEL_RE = re.compile(r"^[a-z][a-z0-9-]{0,40}$")


def check_channel(channel: str) -> str:
    if not CHANNEL_RE.match(channel) or re.match(r"^\d{8}-", channel):
        raise ConfigError(f"--channel: {channel!r}: use a lowercase name like canary or stable (letters, digits, '-')")
    return channel


def gate_problems(record: ReleaseRecord, keys: Iterable[str]) -> list[str]:
    """What stands between this release and a channel: missing or failed verify/scan/canary verdicts."""
    problems = []
    for key in keys:
        for stage in ("verify", "scan"):
            verdict = record.units[key].verdicts.get(stage)
            if verdict is None:
                problems.append(f"{key}: no {stage} verdict")
            elif not verdict.get("passed"):
                problems.append(f"{key}: {stage} failed")
    canaries = {k: u.verdicts["canary"] for k, u in record.units.items() if "canary" in u.verdicts}
    if not canaries:
        problems.append("no canary verdict (run `shipyard canary`)")
    problems += [f"{k}: canary failed ({v.get('reason', '')})" for k, v in canaries.items() if not v.get("passed")]
    return problems


@dataclass(frozen=True)
class Move:
    unit: str
    repository: str  # path inside the registry
    digest: str
    before: str | None
    manifest: Manifest | None  # the bytes to PUT; None: already in place, or the registry lacks the digest


class Promoter:
    def __init__(self, registry: RegistryClient, namespace: str, emit: Emit) -> None:
        self.registry = registry
        self.namespace = namespace
        self.emit = emit
        self.host = registry.target.host

    def _path(self, repository: str) -> str:
        """The path inside the registry: the record's repository without its host (which may be
        another name for the registry this client talks to)."""
        return repository.split("/", 1)[1]

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
        """Write the entry in-progress, move every tag that is not there yet, then mark it complete.
        Every digest is known to be in the registry before the ledger or any tag is written."""
        absent = [m for m in moves if m.manifest is None and m.before != m.digest]
        if absent:
            more = f" (and {len(absent) - 1} more unit(s))" if len(absent) > 1 else ""
            raise RegistryError(
                f"{entry.release}: {absent[0].unit}: {self.host}/{absent[0].repository}@{absent[0].digest} is not "
                f"in the registry{more}; expected every digest of the release to be there (was the record edited, "
                f"or the image deleted?): nothing promoted"
            )
        if not ledger.entries or ledger.entries[-1] is not entry:
            ledger.entries.append(entry)
        save_ledger(self.registry, self.namespace, ledger)
        pending = [m for m in moves if m.before != m.digest]
        pool = ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS)
        try:
            list(pool.map(lambda m: self._move(channel, m), pending))  # list(): raise the first failure here
        finally:
            # interrupted or failed: the moves in flight finish, the queued ones never start
            pool.shutdown(wait=True, cancel_futures=True)
        moved = len(pending)
        entry.state = "complete"
        save_ledger(self.registry, self.namespace, ledger)
        return moved

    def _move(self, channel: str, move: Move) -> None:
        manifest = move.manifest
        assert manifest is not None  # _apply refuses moves without one
        # put_manifest checks the digest the registry stored against the bytes sent
        self.registry.put_manifest(move.repository, channel, manifest.raw, manifest.media_type)
        self.emit(Event("promote.unit", f"{move.unit}: {channel} -> {move.digest[:19]}", unit=move.unit))

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
        problems = gate_problems(record, units)
        if problems and not force:
            raise PromoteRefused(
                f"promote {record.release} to {channel} refused: {'; '.join(problems[:4])}"
                f"{' …' if len(problems) > 4 else ''} (or --force --reason '…')"
            )
        if force and not reason.strip():
            raise ConfigError("--force needs --reason '…': the reason is recorded in the channel's ledger")
        moves = self._moves(channel, {k: (u.repository, u.digest) for k, u in units.items()})
        ledger = load_ledger(self.registry, self.namespace, channel)
        digests = {m.unit: m.digest for m in moves}
        last = ledger.entries[-1] if ledger.entries else None
        already = all(m.before == m.digest for m in moves)
        if already and last and last.state == "complete" and last.release == record.release:
            self.emit(
                Event(
                    "promote.noop",
                    f"{channel} already points at {record.release} for all {len(moves)} units; nothing changed",
                )
            )
            return 0
        if last and last.state == "in-progress" and last.release == record.release and last.digests == digests:
            entry = last  # finish the interrupted promotion
            self.emit(Event("promote.resume", f"finishing the interrupted promotion of {record.release} to {channel}"))
        else:
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
        ledger = load_ledger(self.registry, self.namespace, channel)
        done = ledger.completed
        if not done:
            raise PromoteRefused(
                f"--channel {channel}: nothing to roll back: no promotion in {self.host}/{self.namespace}/"
                f"shipyard-ledger; expected a channel promoted at least twice (see `shipyard history --channel "
                f"{channel}`)"
            )
        current = done[-1]
        previous = next((e for e in reversed(done[:-1]) if e.release != current.release), None)
        if previous is None:
            raise PromoteRefused(
                f"--channel {channel}: nothing to roll back to: {current.release} is the only release in its "
                f"history; expected an earlier release (see `shipyard history --channel {channel}`)"
            )
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
