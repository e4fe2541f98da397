"""How results reach a person: ``Console`` is the plain renderer (timestamped lines, CI-friendly, and tables)
and the interface commands talk to; ``cli/output`` has the terminal and GitHub Actions variants. Verbosity
runs from ``-q`` (results only: ``RESULT_KINDS``) to ``-vv`` (the buildx output); ``SILENT`` (--json) shows
nothing but ``data()``."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from ..events import Event, EventKind
from ..record import ReleaseRecord, reports_dir

# results: shown even with -q (a build's unit lines are results too, but its summary table repeats them)
RESULT_KINDS: frozenset[EventKind] = frozenset(
    {"record", "unit.failed", "promote.done", "promote.noop", "rollback.done", "deploy.done", "deploy.failed"}
)
# the live view's fine-grained progress: plain output shows them from -v on
DETAIL_KINDS: frozenset[EventKind] = frozenset(
    {
        "unit.checking",
        "unit.reusing",
        "unit.step",
        "unit.attested",
        "deploy.output",
        "model.layer.uploaded",
        "model.pushed",
    }
)


class Console:
    """Renders events as plain lines (CI-friendly); -q keeps only results, -v adds commands."""

    SILENT = -2

    def __init__(
        self,
        verbosity: int,
        *,
        stream: TextIO | None = None,
        utc: bool = False,
        step_summary: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.verbosity = verbosity
        self.stream = stream  # None: sys.stdout at the time of writing (pytest's capsys swaps it)
        self.utc = utc  # CI logs without timestamps of their own: an absolute UTC time on every event line
        self.step_summary = step_summary  # GitHub Actions' $GITHUB_STEP_SUMMARY: Markdown appended there
        self.clock, self.wall = clock, wall
        self.started = clock()
        self._lock = threading.Lock()  # events come from the build's threads; a line is written whole

    def write(self, text: str) -> None:
        with self._lock:
            print(text, file=self.stream or sys.stdout, flush=True)

    def line(self, text: str) -> None:
        """A result (a table row, a command's last line): shown with -q, not under --json."""
        if self.verbosity > self.SILENT:
            self.write(text)

    def info(self, text: str) -> None:
        """Progress a person follows (what a command is about to do): hidden by -q."""
        if self.verbosity >= 0:
            self.write(text)

    def data(self, text: str) -> None:
        """Machine output (--json): always printed, alone on stdout."""
        print(text, flush=True)

    def shows(self, event: Event) -> bool:
        """Whether this verbosity shows the event as a line."""
        if event.kind == "build.output":
            return self.verbosity > 1
        if self.verbosity <= self.SILENT:
            return False
        if self.verbosity < 0:
            return event.kind in RESULT_KINDS
        return self.verbosity > 0 or event.kind not in DETAIL_KINDS

    def stamp(self) -> str:
        elapsed = f"[{self.clock() - self.started:6.1f}s]"
        return f"{self.wall().strftime('%Y-%m-%dT%H:%M:%SZ')} {elapsed}" if self.utc else elapsed

    def format(self, event: Event) -> str:
        if event.kind == "build.output":
            return f"  {event.unit} | {event.message}"
        return f"{self.stamp()} {event.message}"

    def event(self, event: Event) -> None:
        if self.shows(event):
            self.write(self.format(event))

    def command(self, text: str) -> None:
        if self.verbosity > 0:
            self.line(text)

    def table(self, rows: Sequence[tuple[str, ...]]) -> None:
        """The first row is the header."""
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for i, row in enumerate(rows):
            self.line("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                self.line("  ".join("-" * w for w in widths))

    @contextlib.contextmanager
    def live_build(self) -> Iterator[None]:
        """Around a build: the terminal console shows the DAG live; plain output needs nothing."""
        yield

    def summarize(
        self, record: ReleaseRecord, stage: str, promotions: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        """After a stage: the release as a Markdown table in the GitHub job summary, when there is one."""
        if self.step_summary is not None:
            from .output.summary import markdown_summary

            self._append_summary(markdown_summary(record, stage, promotions or {}))

    def failed(self, error: BaseException, command: str, project: Path) -> None:
        """Before the one ``shipyard: error:`` line: what else should know (the job summary; annotations)."""
        if self.step_summary is not None:
            from .output.summary import markdown_failure

            self._append_summary(markdown_failure(command, str(error)))

    def _append_summary(self, text: str) -> None:
        assert self.step_summary is not None
        with contextlib.suppress(OSError), self.step_summary.open("a", encoding="utf-8") as handle:
            handle.write(text)


def table(console: Console, rows: list[tuple[str, ...]]) -> None:
    console.table(rows)


def print_summary(console: Console, record: ReleaseRecord, ran: Collection[str] | None = None) -> None:
    """The units this run (``ran``: its plan's keys; default every unit) pushed, built or reused, then
    what the release record now holds, when earlier runs of the release (other profiles) added to it."""
    keys = [key for key in record.units if ran is None or key in ran]
    rows: list[tuple[str, ...]] = [("unit", "outcome", "digest", "size", "time")]
    for key in keys:
        unit = record.units[key]
        if unit.reused_from:
            outcome = f"reused {unit.reused_from}"
        else:
            verb = "cached" if unit.steps and unit.cache_hits == unit.steps else "built"
            outcome = (
                f"{verb} ({unit.cache_hits}/{unit.steps} steps cached)"
                if unit.steps
                else ("built (every step shared with a concurrent build)")
            )
        rows.append((key, outcome, unit.digest[:19], f"{unit.size / 1e6:.1f} MB", f"{unit.duration_s:.1f}s"))
    console.line("")
    table(console, rows)
    reused = sum(bool(record.units[key].reused_from) for key in keys)
    line = f"\n{len(keys)} units pushed as {record.release} to {record.registry} "
    line += f"({len(keys) - reused} built, {reused} reused)"
    if record.aliases:
        line += f", also tagged {', '.join(record.aliases)}"
    if models := sorted({name for key in keys for name in record.units[key].models}):
        line += f"; {len(models)} model{'s' if len(models) > 1 else ''} pinned ({', '.join(models)})"
    if earlier := len(record.units) - len(keys):
        held = sum(bool(u.reused_from) for u in record.units.values())
        line += (
            f"; the release record now holds {len(record.units)} units ({earlier} from earlier runs; "
            f"{len(record.units) - held} built, {held} reused in all)"
        )
    console.line(line)


def print_verify_failures(console: Console, root: Path, release: str) -> None:
    data = json.loads((reports_dir(root, release) / "verify.json").read_text())
    rows: list[tuple[str, ...]] = [("unit", "check", "expected", "found")]
    rows += [
        (f["unit"], f["check"], f["expected"][:60], f["found"][:70]) for f in data["findings"] if f["status"] == "fail"
    ]
    table(console, rows)


def print_scan_summary(console: Console, record: ReleaseRecord) -> None:
    rows: list[tuple[str, ...]] = [("unit", "critical", "high", "medium", "low", "secrets", "verdict")]
    for key, unit in record.units.items():
        scan = unit.verdicts.scan
        if scan is None:
            continue
        c = scan.counts
        verdict = "pass" if scan.passed else "FAIL " + ",".join(scan.blocking[:3])
        rows.append(
            (key, str(c["CRITICAL"]), str(c["HIGH"]), str(c["MEDIUM"]), str(c["LOW"]), str(scan.secrets), verdict)
        )
    if len(rows) > 1:
        table(console, rows)


def print_canary_summary(console: Console, record: ReleaseRecord) -> None:
    rows: list[tuple[str, ...]] = [("service", "ready", "p50", "p95", "slo p95", "errors", "verdict")]
    for key, unit in record.units.items():
        canary = unit.verdicts.canary
        if canary is None:
            continue
        rows.append(
            (
                key,
                f"{canary.ready_s}s",
                f"{canary.p50_ms} ms",
                f"{canary.p95_ms} ms",
                f"{canary.slo_p95_ms} ms",
                str(canary.error_rate),
                "pass" if canary.passed else "FAIL " + canary.reason[:60],
            )
        )
        if not canary.passed and canary.logs:
            rows.append(("  last log lines:", "", "", "", "", "", ""))
            rows.extend((f"  | {line[:100]}", "", "", "", "", "", "") for line in canary.logs[-8:])
    if len(rows) > 1:
        table(console, rows)
