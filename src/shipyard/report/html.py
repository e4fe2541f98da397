"""The release report as one self-contained HTML page: inline CSS, an inline SVG chart, no network at all.

Everything from the record, the reports and the ledgers is escaped (``html.escape``); a Content-Security-Policy
of ``default-src 'none'`` makes a browser refuse any fetch, so the page reads the same air-gapped, from a CI
artifact or from a file:// URL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from ..verdicts import CanaryVerdict
from .model import ReleaseReport, record_origin
from .text import (
    build_text,
    canary_text,
    counts_text,
    files_text,
    gates,
    model_signed,
    model_verified,
    models_summary,
    number,
    platforms_text,
    profiles_text,
    runs_text,
    short_digest,
    short_parent,
    signed_text,
    size_text,
    verify_text,
)

UNIT_COLUMNS = ("image", "kind", "digest", "size", "parent", "build", "verify", "scan", "canary", "signed", "platforms")
CSP = "default-src 'none'; style-src 'unsafe-inline'"
STYLE = """
body { font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; margin: 24px 32px; color: #1d232a; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 15px; margin: 18px 0 6px; } .meta { color: #57606a; margin: 0 0 8px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 12px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; } tr:nth-child(even) td { background: #fbfcfd; }
code { font: 12px "DejaVu Sans Mono", monospace; } td.num { text-align: right; white-space: nowrap; }
.badge { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600;
  white-space: nowrap; } code.digest, code.id { white-space: nowrap; }
.sev-critical { background: #82071e; color: #fff; } .sev-high { background: #cf222e; color: #fff; }
.sev-medium { background: #fb8f44; color: #24292f; } .sev-low, .sev-unknown { background: #eaeef2; color: #24292f; }
.ok { background: #dafbe1; color: #116329; } .fail { background: #ffebe9; color: #a40e26; }
.none { background: #eaeef2; color: #57606a; } .warn { background: #fff8c5; color: #7d4e00; }
ul.gates { list-style: none; padding: 0; display: flex; gap: 10px; margin: 8px 0; }
.note { background: #fff8c5; border: 1px solid #d4a72c; padding: 6px 10px; border-radius: 4px; }
svg text { font: 12px "DejaVu Sans", sans-serif; fill: #1d232a; } footer { color: #57606a; margin-top: 28px; }
"""
FORCED = '<span class="badge warn">FORCED</span> '
P50, P95, OVER, SLO = "#8fb8e6", "#1f5a99", "#cf222e", "#cf222e"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _badge(ok: bool | None, label: str) -> str:
    cls = "none" if ok is None else "ok" if ok else "fail"
    return f'<span class="badge {cls}">{_e(label)}</span>'


def _table(header: Sequence[str], rows: Sequence[str], cls: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def render_html(report: ReleaseReport) -> str:
    record = report.record
    reused = sum(bool(u.reused_from) for u in record.units.values())
    gate_items = "".join(f'<li class="gate">{_badge(gate.ok, str(gate))}</li>' for gate in gates(report))
    body = [
        f'<header><h1>Release <span id="release">{_e(record.release)}</span></h1>',
        f'<p class="meta">revision <code>{_e(record.revision)}</code> · created {_e(record.created)} · registry '
        f"<code>{_e(record.registry)}</code> · {len(record.units)} units ({len(record.units) - reused} built, "
        f"{reused} reused) · {_e(record_origin(record))}</p>",
        f'<ul class="gates">{gate_items}</ul></header>',
        '<section id="units"><h2>Images</h2>',
    ]
    for profile in report.profiles:
        rows = [_unit_row(report, key) for key, _ in report.units_of(profile)]
        body += [f"<h3>Profile {_e(profile)}</h3>", _table(UNIT_COLUMNS, rows, f"units profile-{_e(profile)}")]
    body.append("</section>")
    failures = [(key, f) for key, tally in report.verify.items() for f in tally.failed]
    if failures:
        items = "".join(f"<li><code>{_e(k)}</code>: {_e(f)}</li>" for k, f in failures)
        body.append(f'<section id="verify-failures"><h2>Verify failures</h2><ul>{items}</ul></section>')
    body += [_models(report), _canary(report), _findings(report), _history(report), _placements(report)]
    generated = f" on {_e(report.generated)}" if report.generated else ""
    body.append(f"<footer>shipyard release report{generated}</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Release {_e(record.release)}: shipyard report</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _unit_row(report: ReleaseReport, key: str) -> str:
    u = report.record.units[key]
    tally = report.verify.get(key)
    scan, canary = u.verdicts.scan, u.verdicts.canary
    scan_cell = "not scanned"
    if scan is not None:
        notes = [counts_text(scan)]
        for label, ids in (("blocked by", scan.blocking), ("allowed", scan.suppressed)):
            if ids:
                notes.append(f"{label} {', '.join(ids)}")
        if scan.vulnerabilities == "skipped":
            notes.append("vulnerabilities not scanned")
        scan_cell = _badge(scan.passed, "passed" if scan.passed else "blocked") + " " + _e("; ".join(notes))
    cells = [
        f"<td>{_e(u.image)}</td>",
        f"<td>{_e(u.kind)}</td>",
        f'<td><code class="digest" title="{_e(u.digest)}">{_e(short_digest(u.digest))}</code></td>',
        f'<td class="num" title="{u.size} bytes">{_e(size_text(u.size))}</td>',
        f'<td><code title="{_e(u.parent)}">{_e(short_parent(u.parent, report.record.registry))}</code></td>',
        f"<td>{_e(build_text(u))}</td>",
        f"<td>{_badge(None if tally is None else tally.ok, verify_text(tally))}</td>",
        f"<td>{scan_cell}</td>",
        f"<td>{_badge(canary.passed, canary_text(canary)) if canary is not None else '—'}</td>",
        f"<td>{_badge(bool(u.attestations.get('signature')), signed_text(u))}</td>",
        f'<td class="platforms">{_e(platforms_text(u))}</td>',
    ]
    return f'<tr data-unit="{_e(key)}">{"".join(cells)}</tr>'


def _models(report: ReleaseReport) -> str:
    if not report.models:
        return ""
    rows = []
    for row in report.models:
        model = row.model
        signed_ok, signed = model_signed(row)
        verified_ok, verified = model_verified(row, report.record.release)
        files = "; ".join(f"{f.path} ({f.size} bytes)" for f in model.files)
        cells = [
            f"<td>{_e(row.name)}</td>",
            f"<td>{_e(model.format or '-')}</td>",
            f'<td><code class="digest" title="{_e(model.ref)}">{_e(short_digest(model.digest))}</code></td>',
            f'<td class="num" title="{model.size} bytes">{_e(size_text(model.size))}</td>',
            f'<td title="{_e(files)}">{_e(files_text(row))}</td>',
            f'<td title="{_e(model.origin)}">{_e(model.source)}</td>',
            f'<td class="signed">{_badge(signed_ok, signed)}</td>',
            f'<td class="verified">{_badge(verified_ok, verified)}</td>',
            f'<td class="runs">{_e(runs_text(row.runs))}</td>',
        ]
        rows.append(f'<tr data-model="{_e(row.name)}">{"".join(cells)}</tr>')
    header = ("model", "format", "digest", "size", "files", "source", "signed", "verified", "runs on")
    return (
        f'<section id="models"><h2>Models</h2><p class="meta">{_e(models_summary(report))}</p>'
        + _table(header, rows, "models")
        + "</section>"
    )


def _canary(report: ReleaseReport) -> str:
    canaried = report.canaried()
    if not canaried:
        return '<section id="canary"><h2>Canary</h2><p>No canary verdicts in this release.</p></section>'
    rows = [
        f'<tr data-unit="{_e(key)}"><td>{_e(key)}</td>'
        + "".join(
            f'<td class="num">{_e(number(value, unit))}</td>'
            for value, unit in ((v.p50_ms, "ms"), (v.p95_ms, "ms"), (v.slo_p95_ms, "ms"), (v.error_rate, ""))
        )
        + f'<td class="num">{_e(v.requests)}</td><td class="num">{_e(number(v.ready_s, "s"))}</td>'
        + f"<td>{_badge(v.passed, 'passed' if v.passed else 'FAILED: ' + v.reason)}"
        + "</td></tr>"
        for key, v in canaried
    ]
    header = ("service", "p50", "p95", "SLO p95", "error rate", "requests", "ready", "result")
    return (
        '<section id="canary"><h2>Canary latency</h2>'
        + latency_chart(canaried)
        + _table(header, rows, "canary")
        + "</section>"
    )


def _nice_step(span: float) -> float:
    """A 1, 2 or 5 × 10ⁿ step that cuts ``span`` into about five intervals."""
    raw = max(span, 1e-9) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def latency_chart(canaried: Sequence[tuple[str, CanaryVerdict]]) -> str:
    """Horizontal bars of p50 and p95 per service, with each service's p95 SLO as a dashed line."""
    label_w, plot_w, row_h, top, bottom = 250, 560, 46, 36, 34
    values = [
        float(value)
        for _, v in canaried
        for value in (v.p50_ms, v.p95_ms, v.slo_p95_ms)
        if isinstance(value, int | float)
    ]
    step = _nice_step(max(values, default=1.0))
    scale_max = step * max(1, math.ceil(max(values, default=1.0) * 1.05 / step))
    width, height = label_w + plot_w + 90, top + row_h * len(canaried) + bottom

    def x(value: float) -> float:
        return round(label_w + plot_w * value / scale_max, 1)

    parts = [
        f'<svg id="latency-chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="canary latency p50 and p95 per service against the SLO">',
        "<title>canary latency: p50 and p95 per service, dashed line: the p95 SLO</title>",
        f'<rect x="{label_w}" y="8" width="12" height="12" fill="{P50}"/><text x="{label_w + 18}" y="18">p50</text>',
        f'<rect x="{label_w + 60}" y="8" width="12" height="12" fill="{P95}"/>'
        f'<text x="{label_w + 78}" y="18">p95</text>',
        f'<line x1="{label_w + 120}" y1="14" x2="{label_w + 144}" y2="14" stroke="{SLO}" stroke-width="2" '
        f'stroke-dasharray="5 3"/><text x="{label_w + 150}" y="18">SLO p95</text>',
    ]
    axis_y = top + row_h * len(canaried)
    tick = 0.0
    while tick <= scale_max + step / 2:
        parts.append(
            f'<line x1="{x(tick)}" y1="{top}" x2="{x(tick)}" y2="{axis_y}" stroke="#d0d7de"/>'
            f'<text x="{x(tick)}" y="{axis_y + 16}" text-anchor="middle">{_e(number(tick))}</text>'
        )
        tick += step
    parts.append(f'<text x="{label_w + plot_w / 2}" y="{axis_y + 31}" text-anchor="middle">milliseconds</text>')
    for i, (key, v) in enumerate(canaried):
        y = top + i * row_h
        parts.append(f'<g class="service" data-unit="{_e(key)}">')
        parts.append(f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4}" text-anchor="end">{_e(key)}</text>')
        slo = v.slo_p95_ms
        for offset, name, colour, value in ((7, "p50_ms", P50, v.p50_ms), (23, "p95_ms", P95, v.p95_ms)):
            if not isinstance(value, int | float):
                parts.append(f'<text x="{label_w + 4}" y="{y + offset + 11}">{name[:3]}: no measurement</text>')
                continue
            fill = OVER if name == "p95_ms" and isinstance(slo, int | float) and value > slo else colour
            parts.append(
                f'<rect x="{label_w}" y="{y + offset}" width="{max(x(value) - label_w, 1)}" height="14" '
                f'fill="{fill}"><title>{_e(key)} {name[:3]} {_e(number(value, "ms"))}</title></rect>'
                f'<text x="{x(value) + 4}" y="{y + offset + 11}">{name[:3]} {_e(number(value, "ms"))}</text>'
            )
        if isinstance(slo, int | float):
            parts.append(
                f'<line x1="{x(slo)}" y1="{y + 3}" x2="{x(slo)}" y2="{y + row_h - 5}" stroke="{SLO}" '
                f'stroke-width="2" stroke-dasharray="5 3"><title>SLO p95 {_e(number(slo, "ms"))}</title></line>'
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _findings(report: ReleaseReport) -> str:
    if not report.top_findings:
        return '<section id="findings"><h2>Scan findings</h2><p>No findings in the scan reports.</p></section>'
    rows = []
    for top in report.top_findings:
        f = top.finding
        gate = _badge(False, "blocking") if top.blocking else _badge(None, "allowed") if top.suppressed else ""
        units = report.units_text(top.units, shown=4)
        rows.append(
            f'<tr data-finding="{_e(f.id)}"><td><span class="badge sev-{_e(f.severity.lower())}">{_e(f.severity)}'
            f'</span></td><td><code class="id">{_e(f.id)}</code></td><td>{gate}</td><td>{_e(top.where)}</td>'
            f"<td>{_e(f.installed)}</td><td>{_e(f.fixed or 'no fix')}</td><td>{_e(f.title)}</td>"
            f'<td title="{_e(", ".join(top.units))}">{_e(units)}</td></tr>'
        )
    more = (
        f"<p>{report.more_findings} more distinct finding(s) in the trivy reports under <code>scan/</code>.</p>"
        if report.more_findings
        else ""
    )
    header = ("severity", "id", "gate", "package", "installed", "fixed in", "title", "units")
    return f'<section id="findings"><h2>Top scan findings</h2>{_table(header, rows, "findings")}{more}</section>'


def _history(report: ReleaseReport) -> str:
    out = ['<section id="history"><h2>Promotion history</h2>']
    if report.history_note:
        out.append(f'<p class="note">{_e(report.history_note)}</p>')
    for channel in report.history:
        out.append(f'<h3>Channel <span class="channel">{_e(channel.channel)}</span></h3>')
        if channel.error:
            out.append(f'<p class="note">{_e(channel.error)}</p>')
            continue
        if not channel.rows:
            out.append(f"<p>{_e(channel.empty_text())}</p>")
            continue
        rows = [
            f'<tr data-channel="{_e(channel.channel)}" data-release="{_e(row.entry.release)}">'
            + "".join(
                f"<td>{_e(cell)}</td>"
                for cell in (row.entry.at, row.relation, row.entry.action, row.entry.release, profiles_text(row.units))
            )
            + f"<td>{_e(row.entry.by)}</td><td>{_badge(row.entry.state == 'complete', row.entry.state)}</td>"
            + f"<td>{FORCED if row.entry.forced else ''}{_e(row.entry.reason)}</td>"
            + "</tr>"
            for row in channel.rows
        ]
        header = ("when", "this release", "action", "release", "units", "by", "state", "note")
        out.append(_table(header, rows, "history"))
    out.append("</section>")
    return "".join(out)


def _placements(report: ReleaseReport) -> str:
    if not report.placements:
        return ""
    rows = [
        f'<tr data-target="{_e(p.target)}">'
        + f"<td>{_e(p.target)}</td><td>{_badge(_placed_ok(p.state), p.state)}</td>"
        + "".join(f"<td>{_e(cell)}</td>" for cell in (p.at or "-", p.release or "-", p.strategy or "-"))
        + f"<td>{_e(number(p.p95_ms, 'ms'))}</td></tr>"
        for p in report.placements
    ]
    header = ("target", "state", "when", "deployed as", "strategy", "live p95")
    return '<section id="placements"><h2>Where it runs</h2>' + _table(header, rows, "placements") + "</section>"


def _placed_ok(state: str) -> bool | None:
    return True if state == "running" else False if state in ("rolled-back", "failed") else None
