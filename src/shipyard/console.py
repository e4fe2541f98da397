"""How results reach a person: plain, timestamped, line-oriented output (CI-friendly) and tables."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .events import Event
from .release.record import ReleaseRecord, reports_dir


class Console:
    """Renders events as plain lines (CI-friendly); -q keeps only results, -v adds commands."""

    SILENT = -2

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        """Human output; not printed under --json."""
        if self.verbosity > self.SILENT:
            print(text, flush=True)

    def data(self, text: str) -> None:
        """Machine output (--json): always printed, alone on stdout."""
        print(text, flush=True)

    def event(self, event: Event) -> None:
        if event.kind == "build.output":
            if self.verbosity > 1:
                self.line(f"  {event.unit} | {event.message}")
            return
        if self.verbosity <= self.SILENT:
            return
        if self.verbosity < 0 and event.kind not in ("unit.built", "record"):
            return
        self.line(f"[{time.monotonic() - self.started:6.1f}s] {event.message}")

    def command(self, text: str) -> None:
        if self.verbosity > 0:
            self.line(text)


def table(console: Console, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        console.line("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            console.line("  ".join("-" * w for w in widths))


def print_summary(console: Console, record: ReleaseRecord) -> None:
    rows: list[tuple[str, ...]] = [("unit", "outcome", "digest", "size", "time")]
    for key, unit in record.units.items():
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
    reused = sum(bool(u.reused_from) for u in record.units.values())
    console.line(
        f"\n{len(record.units)} units pushed as {record.release} to {record.registry} "
        f"({len(record.units) - reused} built, {reused} reused)"
    )


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
        scan = unit.verdicts.get("scan")
        if not scan:
            continue
        c = scan["counts"]
        verdict = "pass" if scan["passed"] else "FAIL " + ",".join(scan["blocking"][:3])
        rows.append(
            (key, str(c["CRITICAL"]), str(c["HIGH"]), str(c["MEDIUM"]), str(c["LOW"]), str(scan["secrets"]), verdict)
        )
    if len(rows) > 1:
        table(console, rows)


def print_canary_summary(console: Console, record: ReleaseRecord) -> None:
    rows: list[tuple[str, ...]] = [("service", "ready", "p50", "p95", "slo p95", "errors", "verdict")]
    for key, unit in record.units.items():
        canary = unit.verdicts.get("canary")
        if not canary:
            continue
        rows.append(
            (
                key,
                f"{canary['ready_s']}s",
                f"{canary['p50_ms']} ms",
                f"{canary['p95_ms']} ms",
                f"{canary['slo_p95_ms']} ms",
                str(canary["error_rate"]),
                "pass" if canary["passed"] else "FAIL " + canary["reason"][:60],
            )
        )
        if not canary["passed"] and canary.get("logs"):
            rows.append(("  last log lines:", "", "", "", "", "", ""))
            rows.extend((f"  | {line[:100]}", "", "", "", "", "", "") for line in canary["logs"][-8:])
    if len(rows) > 1:
        table(console, rows)
