"""A release record as Markdown for the GitHub Actions job summary, pure (record in, text out): one table of
images × profiles with the pushed digests, built or reused, the verdicts so far and the channels a promotion
just moved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...record import ReleaseRecord, UnitRecord
from ...release.gates.findings import SEVERITIES
from ...verdicts import GATE_NAMES, CanaryVerdict, ScanVerdict, VerifyVerdict

PASS, FAIL, NONE = "✅", "❌", "–"
COLUMNS = SEVERITIES[:4]  # C/H/M/L: UNKNOWN is counted, not shown


def markdown_summary(record: ReleaseRecord, stage: str, promotions: Mapping[str, Sequence[str]]) -> str:
    """``promotions``: unit key → the channels now pointing at its digest."""
    rows = [
        "| image | profile | digest | size | build | verify | scan C/H/M/L | canary p95 | promoted |",
        "|---|---|---|--:|---|---|---|--:|---|",
    ]
    shown = ""
    for key, unit in _ordered(record):
        rows.append(
            "| "
            + " | ".join(
                _cell(text)
                for text in (
                    unit.image if unit.image != shown else "",
                    unit.profile,
                    f"`{unit.digest[:19]}`",
                    f"{unit.size / 1e6:.1f} MB",
                    _build(unit),
                    _verify(unit.verdicts.verify),
                    _scan(unit.verdicts.scan),
                    _canary(unit.verdicts.canary),
                    ", ".join(promotions.get(key, ())) or NONE,
                )
            )
            + " |"
        )
        shown = unit.image
    return (
        f"### shipyard {stage}: release `{record.release}`\n\n{_headline(record, promotions)}\n\n"
        + "\n".join(rows)
        + "\n\n"
    )


def markdown_failure(command: str, message: str) -> str:
    body = message.replace("```", "'''")
    return f"### shipyard {command} failed\n\n```text\n{body}\n```\n\n"


def _ordered(record: ReleaseRecord) -> list[tuple[str, UnitRecord]]:
    """Families before services, parents first (depth in the record's DAG), then by name; profiles by name."""
    by_repository = {u.repository: u for u in record.units.values()}

    def depth(unit: UnitRecord) -> int:
        seen = 0
        while (parent := by_repository.get(unit.parent.split("@", 1)[0])) is not None and seen < len(by_repository):
            unit, seen = parent, seen + 1
        return seen

    image_depth: dict[str, int] = {}
    for unit in record.units.values():
        image_depth[unit.image] = min(image_depth.get(unit.image, 1 << 30), depth(unit))
    return sorted(
        record.units.items(),
        key=lambda kv: (kv[1].kind != "family", image_depth[kv[1].image], kv[1].image, kv[1].profile),
    )


def _headline(record: ReleaseRecord, promotions: Mapping[str, Sequence[str]]) -> str:
    units = list(record.units.values())
    reused = sum(bool(u.reused_from) for u in units)
    parts = [
        f"`{record.registry}`",
        f"revision `{record.revision[:12]}`",
        f"{len(units)} units: {len(units) - reused} built, {reused} reused",
    ]
    for stage in GATE_NAMES:
        verdicts = [v for u in units if (v := u.verdicts.of(stage)) is not None]
        if verdicts:
            passed = sum(v.passed for v in verdicts)
            parts.append(f"{stage} {passed}/{len(verdicts)} passed")
    parts.append(f"signed {sum(bool(u.attestations.get('signature')) for u in units)}/{len(units)}")
    if any(u.verdicts.scan is not None and u.verdicts.scan.vulnerabilities == "skipped" for u in units):
        parts.append("**vulnerabilities not scanned**")
    channels = sorted({c for chans in promotions.values() for c in chans})
    if channels:
        parts.append(f"promoted to {', '.join(channels)}: {len(promotions)} units")
    return " · ".join(parts)


def _build(unit: UnitRecord) -> str:
    if unit.reused_from:
        return f"reused {unit.reused_from}"
    if not unit.steps:
        return "built"
    if unit.cache_hits == unit.steps:
        return f"cached, {unit.steps}/{unit.steps} steps"
    return f"built, {unit.cache_hits}/{unit.steps} steps cached"


def _verify(verdict: VerifyVerdict | None) -> str:
    if verdict is None:
        return NONE
    return PASS if verdict.passed else f"{FAIL} {', '.join(verdict.failed)}".rstrip()


def _scan(verdict: ScanVerdict | None) -> str:
    if verdict is None:
        return NONE
    mark = PASS if verdict.passed else FAIL
    text = (
        "secrets and misconfigurations only"
        if verdict.vulnerabilities == "skipped"
        else "/".join(str(verdict.counts.get(s, 0)) for s in COLUMNS)
    )
    if verdict.secrets:
        text += f", {verdict.secrets} secret(s)"
    blocking = verdict.blocking
    if blocking:
        text += f": {', '.join(blocking[:3])}{' …' if len(blocking) > 3 else ''}"
    return f"{mark} {text}"


def _canary(verdict: CanaryVerdict | None) -> str:
    if verdict is None:
        return NONE
    p95, slo = _number(verdict.p95_ms), _number(verdict.slo_p95_ms)
    if verdict.passed:
        return f"{PASS} {p95} ms (SLO {slo})"
    return f"{FAIL} {p95} ms: {verdict.reason[:80]}"


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


def _cell(text: str) -> str:
    """Markdown table cells: a pipe would end the cell and a newline the row."""
    return text.replace("|", "\\|").replace("\n", " ")
