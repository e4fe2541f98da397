"""The release report as Markdown: for a pull request, a GitHub Actions job summary or a terminal."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .model import ReleaseReport, record_origin
from .text import (
    build_text,
    canary_text,
    files_text,
    gates,
    model_signed,
    model_verified,
    models_summary,
    number,
    platforms_text,
    profiles_text,
    runs_text,
    scan_text,
    short_digest,
    short_parent,
    signed_text,
    size_text,
    verify_text,
)

_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")
_CODE_SAFE = re.compile(r"^[\w.:/@+-]+$")


def text(value: object) -> str:
    """Plain text in a Markdown table cell: no markup, no HTML, no line breaks, no cell breaks."""
    return _SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def code(value: str) -> str:
    """A digest or a reference as code, when it is one (anything else is escaped text)."""
    return f"`{value}`" if _CODE_SAFE.match(value) else text(value)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(report: ReleaseReport) -> str:
    record = report.record
    reused = sum(bool(u.reused_from) for u in record.units.values())
    out = [
        f"# Release {text(record.release)}",
        "",
        f"Revision {code(record.revision)}, created {text(record.created)}, registry {code(record.registry)}: "
        f"{len(record.units)} units ({len(record.units) - reused} built, {reused} reused); "
        f"{text(record_origin(record))}."
        + (f" Report generated {text(report.generated)}." if report.generated else ""),
        "",
        *[f"- {text(line)}" for line in gates(report)],
        "",
    ]
    for profile in report.profiles:
        out += [f"## Profile {text(profile)}", ""]
        rows = [
            (
                text(u.image),
                text(u.kind),
                code(short_digest(u.digest)),
                size_text(u.size),
                code(short_parent(u.parent, record.registry)),
                text(build_text(u)),
                text(verify_text(report.verify.get(key))),
                text(scan_text(u.verdicts.scan)),
                text(canary_text(u.verdicts.canary)),
                text(signed_text(u)),
                text(platforms_text(u)),
            )
            for key, u in report.units_of(profile)
        ]
        header = ("image", "kind", "digest", "size", "parent", "build", "verify", "scan", "canary", "signed")
        out += _table((*header, "platforms"), rows)
    failures = [(key, f) for key, tally in report.verify.items() for f in tally.failed]
    if failures:
        out += ["## Verify failures", ""]
        out += [f"- {text(key)}: {text(failure)}" for key, failure in failures]
        out += [""]
    out += _models(report)
    out += _canary(report)
    out += _findings(report)
    out += _history(report)
    out += _placements(report)
    return "\n".join(out).rstrip() + "\n"


def _models(report: ReleaseReport) -> list[str]:
    if not report.models:
        return []
    rows = [
        (
            text(row.name),
            text(row.model.format or "-"),
            code(short_digest(row.model.digest)),
            size_text(row.model.size),
            text(files_text(row)),
            text(row.model.source),
            text(model_signed(row)[1]),
            text(model_verified(row, report.record.release)[1]),
            text(runs_text(row.runs)),
        )
        for row in report.models
    ]
    header = ("model", "format", "digest", "size", "files", "source", "signed", "verified", "runs on")
    return ["## Models", "", text(models_summary(report)), "", *_table(header, rows)]


def _canary(report: ReleaseReport) -> list[str]:
    canaried = report.canaried()
    if not canaried:
        return ["## Canary", "", "No canary verdicts in this release.", ""]
    rows = [
        (
            text(key),
            number(v.p50_ms, "ms"),
            number(v.p95_ms, "ms"),
            number(v.slo_p95_ms, "ms"),
            number(v.error_rate),
            str(v.requests),
            number(v.ready_s, "s"),
            "passed" if v.passed else text(f"FAILED: {v.reason}"),
        )
        for key, v in canaried
    ]
    header = ("service", "p50", "p95", "SLO p95", "error rate", "requests", "ready", "result")
    return ["## Canary latency", "", *_table(header, rows)]


def _findings(report: ReleaseReport) -> list[str]:
    if not report.top_findings:
        return ["## Scan findings", "", "No findings in the scan reports.", ""]
    rows = []
    for top in report.top_findings:
        f = top.finding
        flag = "blocking" if top.blocking else "allowed" if top.suppressed else ""
        units = report.units_text(top.units)
        fix = f.fixed or "no fix"
        rows.append(
            (text(f.severity), text(f.id), text(flag), text(top.where), text(f.installed), text(fix), text(f.title))
            + (text(units),)
        )
    header = ("severity", "id", "gate", "package", "installed", "fixed in", "title", "units")
    out = ["## Top scan findings", "", *_table(header, rows)]
    if report.more_findings:
        out += [f"{report.more_findings} more distinct finding(s) in the trivy reports under `scan/`.", ""]
    return out


def _history(report: ReleaseReport) -> list[str]:
    out = ["## Promotion history", ""]
    if report.history_note:
        return [*out, text(report.history_note), ""]
    for channel in report.history:
        out += [f"### {text(channel.channel)}", ""]
        if channel.error:
            out += [text(channel.error), ""]
            continue
        if not channel.rows:
            out += [text(channel.empty_text()), ""]
            continue
        rows = [
            (
                text(row.entry.at),
                text(row.relation),
                text(row.entry.action),
                text(row.entry.release),
                text(profiles_text(row.units)),
                text(row.entry.by),
                text(row.entry.state),
                text(("FORCED: " if row.entry.forced else "") + row.entry.reason),
            )
            for row in channel.rows
        ]
        out += _table(("when", "this release", "action", "release", "units", "by", "state", "note"), rows)
    return out


def _placements(report: ReleaseReport) -> list[str]:
    if not report.placements:
        return []
    out = ["## Where it runs", ""]
    rows = [
        (
            text(p.target),
            text(p.state),
            text(p.at or "-"),
            text(p.release or "-"),
            text(p.strategy or "-"),
            text(number(p.p95_ms, "ms")),
        )
        for p in report.placements
    ]
    return out + _table(("target", "state", "when", "deployed as", "strategy", "live p95"), rows)
