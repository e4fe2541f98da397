"""Plain-text pieces of the release report that the Markdown and the HTML pages share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..record import UnitRecord
from ..release.gates.findings import SEVERITIES
from ..verdicts import GATE_NAMES, CanaryPlatform, CanaryVerdict, ScanVerdict, covered_platforms
from .model import ModelRow, ModelRun, ReleaseReport, VerifyTally

MB = 1_000_000


def number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}".rstrip()


def size_text(size: int) -> str:
    if not size:
        return "—"
    return f"{size / MB:.1f} MB" if size >= MB // 10 else f"{size / 1000:.1f} kB"  # a model of a few kB too


def short_digest(digest: str, length: int = 12) -> str:
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:length]}" if hexpart else digest


def short_parent(parent: str, registry: str) -> str:
    """``cpu/family-ml@sha256:4afb651117`` for a parent in the release's namespace, else host-less and short."""
    name, _, digest = parent.partition("@")
    for prefix in (f"{registry}/", f"{registry.split('/', 1)[0]}/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return f"{name}@{short_digest(digest)}" if digest else name


def build_text(unit: UnitRecord) -> str:
    if unit.reused_from:
        return f"reused from {unit.reused_from}"
    return f"built in {number(unit.duration_s, 's')}, {unit.cache_hits}/{unit.steps} steps cached"


def verify_text(tally: VerifyTally | None) -> str:
    if tally is None:
        return "not verified"
    if tally.passed is None:
        return "passed" if tally.ok else f"FAILED: {', '.join(tally.failed)}"
    total = tally.passed + len(tally.failed)
    skipped = f", {tally.skipped} skipped" if tally.skipped else ""
    if tally.ok:
        return f"{tally.passed}/{total} passed{skipped}"
    names = ", ".join(f.split(":", 1)[0] for f in tally.failed)
    return f"{tally.passed}/{total} passed{skipped}, FAILED: {names}"


def counts_text(verdict: ScanVerdict) -> str:
    return " ".join(f"{s[0]}{verdict.counts.get(s, 0)}" for s in SEVERITIES[:4])


def scan_text(verdict: ScanVerdict | None) -> str:
    if verdict is None:
        return "not scanned"
    parts = [("passed" if verdict.passed else "BLOCKED") + " " + counts_text(verdict)]
    if verdict.blocking:
        parts.append("blocked by " + ", ".join(verdict.blocking))
    if verdict.suppressed:
        parts.append("allowed: " + ", ".join(verdict.suppressed))
    if verdict.secrets:
        parts.append(f"{verdict.secrets} secret(s)")
    if verdict.vulnerabilities == "skipped":
        parts.append("vulnerabilities not scanned")
    return "; ".join(parts)


def gate_platforms(unit: UnitRecord) -> list[tuple[str, str]]:
    """Per gate the unit went through: which of its platforms the gate covered, by the record's verdicts:
    ``all`` when every one, else those it covered and those it did not (a canary's, with the reason)."""
    platforms = unit.platforms or [unit.platform]
    out: list[tuple[str, str]] = []
    for gate in GATE_NAMES:
        verdict = unit.verdicts.of(gate)
        if verdict is None:
            continue
        covered = covered_platforms(verdict, unit.platform)
        listed = verdict.platforms or {}
        emulated = [p for p in covered if isinstance(one := listed.get(p), CanaryPlatform) and one.mode == "emulated"]
        if verdict.platforms is None and len(platforms) > 1:
            shown = f"{unit.platform} only (an older shipyard's verdict)"
        elif all(p in covered for p in platforms):
            shown = "all" if len(platforms) > 1 else platforms[0]
        else:
            shown = ", ".join(covered) or "none"
            for platform in (p for p in platforms if p not in covered):
                why = one.reason if isinstance(one := listed.get(platform), CanaryPlatform) else ""
                shown += f"; not {platform}" + (f" ({why})" if why else "")
        if emulated:
            shown += " (" + ", ".join(emulated) + " emulated, latency not judged)"
        out.append((gate, shown))
    return out


def platforms_text(unit: UnitRecord) -> str:
    """``linux/amd64, linux/arm64: verify all, scan all, canary linux/amd64; not linux/arm64 (…)``."""
    platforms = ", ".join(unit.platforms or [unit.platform])
    gates_ = ", ".join(f"{gate} {shown}" for gate, shown in gate_platforms(unit))
    return f"{platforms}: {gates_}" if gates_ else platforms


def signed_text(unit: UnitRecord) -> str:
    """Whether the build signed the unit's digest (verify checks the signature itself, from the registry)."""
    return "signed" if unit.attestations.get("signature") else "unsigned"


def canary_text(verdict: CanaryVerdict | None) -> str:
    if verdict is None:
        return "—"
    outcome = "passed" if verdict.passed else f"FAILED: {verdict.reason}"
    return f"p95 {number(verdict.p95_ms)}/{number(verdict.slo_p95_ms, 'ms')} {outcome}"


def profiles_text(units: Iterable[str]) -> str:
    """``cpu (6), pc2 (6)``: units (``profile/image`` keys) counted by profile."""
    counts: dict[str, int] = {}
    for key in units:
        profile = key.split("/", 1)[0]
        counts[profile] = counts.get(profile, 0) + 1
    return ", ".join(f"{p} ({n})" for p, n in counts.items())


@dataclass(frozen=True)
class Gate:
    stage: str
    passed: int
    judged: int  # units with a verdict of this stage; 0: the stage did not run
    note: str = ""

    @property
    def ok(self) -> bool | None:
        return None if not self.judged else self.passed == self.judged

    def __str__(self) -> str:
        if not self.judged:
            return f"{self.stage}: not run"
        return f"{self.stage}: {self.passed}/{self.judged} passed" + (f" ({self.note})" if self.note else "")


def gates(report: ReleaseReport) -> list[Gate]:
    """Per stage: how many units passed it, of how many that went through it."""
    units = report.record.units.values()
    out = []
    for stage in GATE_NAMES:
        judged = [v for u in units if (v := u.verdicts.of(stage)) is not None]
        note = ""
        if stage == "scan" and any(isinstance(v, ScanVerdict) and v.vulnerabilities == "skipped" for v in judged):
            note = "vulnerabilities not scanned"
        if stage == "canary" and judged:
            note = "profile " + ", ".join(sorted({u.profile for u in units if u.verdicts.canary is not None}))
        out.append(Gate(stage, sum(v.passed for v in judged), len(judged), note))
    return out


def model_signed(row: ModelRow) -> tuple[bool | None, str]:
    """Whether the registry holds a trusted signature on the model's digest (None: it was not asked)."""
    if row.evidence is None:
        return None, f"not checked: {row.note}" if row.note else "not checked"
    if not row.evidence.signers:
        return False, "unsigned (no trusted signature)"
    return True, "signed (" + ", ".join(f"{key[:19]}…" for key in row.evidence.signers) + ")"


def model_verified(row: ModelRow, release: str) -> tuple[bool | None, str]:
    """A signed verify verdict for the digest (the authority), else the record's verdict (a summary only)."""
    signed = row.signed_verdict
    if signed is not None:
        other = signed.release
        return True, "passed (signed verdict" + (f" of {other})" if other and other != release else ")")
    verdict = row.record_verdict
    unsigned = "; no signed verdict" if row.evidence is not None else ""
    if verdict is None:
        return None, "not verified"
    if not verdict.passed:
        problems = [str(p) for p in verdict.problems]
        return False, "FAILED" + (f": {'; '.join(problems)}" if problems else "")
    return None, f"passed (record{unsigned})"


def runs_text(runs: Iterable[ModelRun]) -> str:
    """``mainpc (running), pc2 (replaced by 20250112-77e0d2b5)``, or ``—`` where no target runs it."""
    return ", ".join(f"{run.target} ({run.state})" for run in runs) or "—"


def files_text(row: ModelRow) -> str:
    files = row.model.files
    shown = ", ".join(f.path for f in files[:3])
    return f"{len(files)}: {shown}" + (f" and {len(files) - 3} more" if len(files) > 3 else "")


def models_summary(report: ReleaseReport) -> str:
    """``2 models, 16.3 MB: 2 signed, 1 with a signed verify verdict, 1 running on a target``."""
    rows = report.models
    size = sum(r.model.size for r in rows)
    signed = sum(r.signed is True for r in rows)
    verified = sum(r.signed_verdict is not None for r in rows)
    running = sum(any(run.state == "running" for run in r.runs) for r in rows)
    checked = "" if any(r.evidence is not None for r in rows) else " (signatures not checked)"
    return (
        f"{len(rows)} model(s), {size_text(size)}: {signed} signed, {verified} with a signed verify verdict{checked}, "
        f"{running} running on a target"
    )
