"""The state of every unit of a build, driven by the build's events: what the live view draws.

Pure and thread-safe: events arrive from the build's threads, ``snapshot()`` is read by the
renderer's refresh thread. The clock is injected so tests step time by hand.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from ...events import Event

ACTIVE = ("checking", "reusing", "building", "exporting", "pushing", "caching", "attesting")
FINAL = ("done", "failed", "skipped")


@dataclass(frozen=True)
class UnitState:
    key: str
    prefix: str = ""  # tree drawing: "│  ├─ "
    state: str = "waiting"  # waiting, one of ACTIVE, or one of FINAL
    step: str = ""  # the buildx step running now
    detail: str = ""  # the outcome: "reused 20250110-…", "3/5 steps cached", why it failed
    started: float | None = None
    finished: float | None = None
    built: bool = False  # unit.built seen (attestation may still be running)
    attested: bool = False

    def elapsed(self, now: float) -> float | None:
        if self.started is None:
            return None
        return (self.finished if self.finished is not None else now) - self.started


class DagState:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.units: dict[str, UnitState] = {}
        self.attest = False
        self.status = ""  # the latest event that is not about one unit (preflight, local base, …)
        self.children: dict[str | None, list[str]] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> tuple[list[UnitState], str, float]:
        with self._lock:
            return list(self.units.values()), self.status, self.clock()

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(u.state for u in self.units.values())

    def apply(self, event: Event) -> None:
        with self._lock:
            if event.kind == "plan":
                self._plan(event.data.get("units", []), event.data.get("parents", {}))
                self.attest = bool(event.data.get("attest"))
            elif not event.unit:
                if event.kind != "command":
                    self.status = event.message
            elif event.unit in self.units:
                self._unit(event)

    def _plan(self, keys: Sequence[str], parents: Mapping[str, str | None]) -> None:
        children: dict[str | None, list[str]] = {}
        self.children = children
        for key in keys:
            parent = parents.get(key)
            children.setdefault(parent if parent in keys else None, []).append(key)

        def walk(key: str, lead: str, last: bool, depth: int) -> None:
            self.units[key] = UnitState(key, lead + ("" if depth == 0 else "└─ " if last else "├─ "))
            below = lead + ("" if depth == 0 else "   " if last else "│  ")
            kids = children.get(key, [])
            for i, child in enumerate(kids):
                walk(child, below, i == len(kids) - 1, depth + 1)

        self.units.clear()
        for root in children.get(None, []):
            walk(root, "", True, 0)

    def _unit(self, event: Event) -> None:
        unit = self.units[event.unit]
        now = self.clock()
        started = unit.started if unit.started is not None else now
        kind, data = event.kind, event.data
        if kind == "unit.checking":
            unit = replace(unit, state="checking", started=started)
        elif kind == "unit.reusing":
            unit = replace(unit, state="reusing", started=started)
        elif kind == "unit.started":
            unit = replace(unit, state="building", started=started, detail="; ".join(data.get("reasons", [])))
        elif kind == "unit.step":
            phase = str(data.get("phase", "building"))
            unit = replace(unit, state=phase, step=str(data.get("step", "")), started=started)
        elif kind == "unit.retry":
            unit = replace(unit, state="building", step="registry fault: running buildx again")
        elif kind == "unit.built":
            unit = replace(unit, built=True, detail=_outcome(data.get("record")), step="")
            unit = self._finish_if_attested(unit, now)
        elif kind == "unit.attested":
            unit = self._finish_if_attested(replace(unit, attested=True), now)
        elif kind == "unit.failed":
            first = (str(data.get("error", "")).splitlines() or [""])[0].removeprefix(f"{unit.key}: ")
            unit = replace(unit, state="failed", detail=first, finished=now, started=started)
            self._skip_below(unit.key, unit.key)
        elif kind == "unit.skipped":
            unit = replace(unit, state="skipped", detail=f"{data.get('because', 'its parent')} failed")
        self.units[event.unit] = unit

    def _skip_below(self, key: str, failed: str) -> None:
        """What the scheduler will skip (it says so only at the end): every unit below a failed one."""
        for child in self.children.get(key, []):
            self.units[child] = replace(self.units[child], state="skipped", detail=f"{failed} failed")
            self._skip_below(child, failed)

    def _finish_if_attested(self, unit: UnitState, now: float) -> UnitState:
        if not unit.built:
            return unit  # attested before unit.built reached us (the attacher runs in its own threads)
        if unit.attested or not self.attest:
            return replace(unit, state="done", finished=now)
        return replace(unit, state="attesting")


def _outcome(record: object) -> str:
    """From the UnitRecord in unit.built's data."""
    if record is None:
        return ""
    reused = getattr(record, "reused_from", "")
    if reused:
        return f"reused {reused}"
    steps, hits = getattr(record, "steps", 0), getattr(record, "cache_hits", 0)
    digest = str(getattr(record, "digest", ""))[:19]
    if steps and hits == steps:
        return f"cached ({steps}/{steps} steps) {digest}"
    return f"built ({hits}/{steps} steps cached) {digest}" if steps else f"built {digest}"
