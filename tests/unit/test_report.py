"""The release report's content (Markdown and HTML) from the recorded release of tests/data/report/."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from shipyard.cli.main import main
from shipyard.cli.report_commands import fetch_ledgers
from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from shipyard.oci.retry import RetryPolicy
from shipyard.record import ReleaseRecord
from shipyard.release.channels.ledger import Entry, save_ledger
from shipyard.release.deploy.deployments import Deployment
from shipyard.release.gates.findings import ScanFinding
from shipyard.report.html import latency_chart, render_html
from shipyard.report.markdown import render_markdown
from shipyard.report.model import FromRegistry, ReleaseReport, build_report, concerning, placements
from shipyard.report.text import short_digest
from shipyard.verdicts import UnitVerdicts
from tests import reportdata
from tests.memregistry import MemoryRegistry
from tests.reportdata import NEXT, PREVIOUS, RELEASE


def report(
    record: ReleaseRecord | None = None,
    *,
    verify: bool = True,
    findings: dict[str, list[ScanFinding]] | None = None,
    ledgers: dict[str, list[Entry] | str] | None = None,
    note: str = "",
) -> ReleaseReport:
    rec = record or reportdata.record()
    if ledgers is None:
        ledgers = {name: ledger.entries for name, ledger in reportdata.ledgers().items()}
    return build_report(
        rec,
        verify=reportdata.verify_document() if verify else None,
        findings=reportdata.findings() if findings is None else findings,
        from_registry=FromRegistry(ledgers, note),
        generated="2025-01-11T14:00:00Z",
    )


def section(markdown: str, title: str) -> str:
    """The Markdown between the heading ``title`` and the next heading of the same or a higher level."""
    level = title.split(" ", 1)[0]
    start = markdown.index(title + "\n")
    rest = markdown[start + len(title) + 1 :]
    ends = [m.start() for m in re.finditer(rf"(?m)^#{{1,{len(level)}}} ", rest)]
    return rest[: ends[0]] if ends else rest


def row_of(markdown: str, first_cell: str) -> list[str]:
    line = next(ln for ln in markdown.splitlines() if ln.startswith(f"| {first_cell} |"))
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_markdown_summarises_the_gates_and_counts_built_and_reused_units() -> None:
    md = render_markdown(report())
    assert md.startswith(f"# Release {RELEASE}\n")
    assert "12 units (10 built, 2 reused)" in md
    assert "- verify: 11/12 passed\n- scan: 12/12 passed\n- canary: 3/3 passed (profile cpu)\n" in md


def test_markdown_has_a_row_per_unit_with_digest_size_parent_build_and_verdicts() -> None:
    rec = reportdata.record()
    md = render_markdown(report(rec))
    for profile in ("cpu", "pc2"):
        table = section(md, f"## Profile {profile}")
        for key, unit in rec.units.items():
            if unit.profile != profile:
                continue
            cells = row_of(table, unit.image)
            assert cells[2] == f"`{short_digest(unit.digest)}`", key
            assert cells[2].startswith("`sha256:") and len(cells[2]) == len("`sha256:`") + 12
    pc2 = section(md, "## Profile pc2")
    assert row_of(pc2, "model-ops-coordinator")[3:8] == [
        "331.5 MB",
        "`pc2/family-ml@sha256:a3b246ed07ff`",
        "built in 5.5 s, 1/1 steps cached",
        "15/16 passed, FAILED: size",
        "passed C1 H1 M3 L2; allowed: CVE-2023-45853",
    ]
    assert row_of(pc2, "base-python")[5] == "reused from 20250110-1a2b3c4d"
    assert row_of(section(md, "## Profile cpu"), "model-ops-coordinator")[8] == "p95 47.9/250 ms passed"


def test_units_are_listed_parents_first() -> None:
    table = section(render_markdown(report()), "## Profile cpu")
    images = [ln.split("|")[1].strip() for ln in table.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert images[1:4] == ["base-python", "family-web", "family-ml"], images


def test_verify_failures_name_the_check_and_what_was_found() -> None:
    failures = section(render_markdown(report()), "## Verify failures")
    assert failures.strip() == r"- pc2/model-ops-coordinator: size: expected \<= 320 MB, found 331.5 MB"


def test_without_verify_json_the_record_verdicts_are_shown() -> None:
    md = render_markdown(report(verify=False))
    assert row_of(section(md, "## Profile pc2"), "model-ops-coordinator")[6] == "FAILED: size"
    assert row_of(section(md, "## Profile cpu"), "base-python")[6] == "passed"


def test_canary_latency_table_has_p50_p95_and_the_slo() -> None:
    canary = section(render_markdown(report()), "## Canary latency")
    assert row_of(canary, "cpu/affective-processing-center") == [
        "cpu/affective-processing-center",
        "48.3 ms",
        "71.6 ms",
        "250 ms",
        "0",
        "20",
        "1.8 s",
        "passed",
    ]
    assert row_of(canary, "cpu/real-time-audio-pipeline")[1:3] == ["0.5 ms", "1.5 ms"]


def test_top_findings_worst_first_with_the_gate_and_the_units() -> None:
    findings = section(render_markdown(report()), "## Top scan findings")
    ids = [ln.split("|")[2].strip() for ln in findings.splitlines() if ln.startswith("| ") and "CVE" in ln]
    # severity first; within MEDIUM the one with a fix comes first
    assert ids == [
        "CVE-2023-45853",
        "CVE-2023-52425",
        "CVE-2024-5569",
        "CVE-2023-4039",
        "CVE-2023-50495",
        "CVE-2011-3374",
        "CVE-2022-0563",
    ]
    assert row_of(findings, "CRITICAL")[1:6] == ["CVE-2023-45853", "allowed", "zlib1g", "1:1.2.13.dfsg-1", "no fix"]
    assert row_of(findings, "CRITICAL")[7] == "all 12 units"
    zipp = next(ln for ln in findings.splitlines() if "CVE-2024-5569" in ln)
    assert "3.19.1" in zipp
    assert "cpu/family-ml, cpu/model-ops-coordinator, cpu/real-time-audio-pipeline and 3 more" in zipp


def test_a_blocking_finding_is_marked_and_listed_first_within_its_severity() -> None:
    rec = reportdata.record()
    scan = rec.units["cpu/base-python"].verdicts.scan
    assert scan is not None
    scan.passed, scan.blocking = False, ["CVE-2023-52425"]
    md = render_markdown(report(rec))
    assert row_of(section(md, "## Top scan findings"), "HIGH")[1:3] == ["CVE-2023-52425", "blocking"]
    assert "- scan: 11/12 passed" in md
    cells = row_of(section(md, "## Profile cpu"), "base-python")
    assert cells[7].startswith("BLOCKED C1 H1 M2 L2; blocked by CVE-2023-52425")


def test_promotion_history_shows_entries_about_this_release_only() -> None:
    md = render_markdown(report())
    canary = section(md, "### canary")
    rows = [ln for ln in canary.splitlines() if ln.startswith("| 2025")]
    assert len(rows) == 2  # the previous release's promotion does not mention this one
    assert row_of(canary, "2025-01-11T12:41:09Z")[1:5] == ["promoted", "promote", RELEASE, "cpu (6)"]
    # the next release replaced 5 of the 6 cpu units (base-python was reused: same digest, not replaced)
    assert row_of(canary, "2025-01-12T09:15:40Z")[1:5] == [f"replaced by {NEXT}", "promote", NEXT, "cpu (5)"]
    stable = row_of(section(md, "### stable"), "2025-01-11T13:05:52Z")
    assert stable[4:] == [
        "cpu (6), pc2 (6)",
        "mara@buildhost",
        "complete",
        "FORCED: pc2/model-ops-coordinator 11 MB over its size budget; budget raised in #142".replace("#", r"\#"),
    ]


def test_a_rollback_to_this_release_is_named_so() -> None:
    rec = reportdata.record()
    digests = {k: u.digest for k, u in rec.units.items()}
    entry = Entry("rollback", rec.release, digests, dict.fromkeys(digests), at="2025-01-13T08:00:00Z", by="x")
    (row,) = concerning(rec, [entry])
    assert row.relation == "rolled back to" and len(row.units) == 12


def test_history_says_why_it_is_missing() -> None:
    note = "Promotion history not shown: the registry localhost:5000/shipyard is not reachable (refused)."
    md = render_markdown(report(ledgers={}, note=note))
    assert section(md, "## Promotion history").strip() == note
    md = render_markdown(report(ledgers={"canary": [], "stable": "The stable ledger could not be read: HTTP 500"}))
    assert "No promotions to canary yet." in md and "The stable ledger could not be read: HTTP 500" in md


def test_untrusted_text_cannot_break_a_table_or_inject_markup() -> None:
    hostile = ScanFinding("vulnerability", "CVE-2099-0001", "CRITICAL", "pkg|x", "1", "", "a | b\n<script>x</script>")
    rec = reportdata.record()
    md = render_markdown(report(rec, findings={"cpu/base-python": [hostile]}))
    line = next(ln for ln in md.splitlines() if "CVE-2099-0001" in ln)
    assert len(re.split(r"(?<!\\)\|", line)) == 10  # 8 cells, no more
    assert "<script>" not in md and r"\<script\>" in md
    html = render_html(report(rec, findings={"cpu/base-python": [hostile]}))
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attributes: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes += [(tag, name, value or "") for name, value in attrs]


def test_html_is_self_contained() -> None:
    html = render_html(report())
    parser = _Attributes()
    parser.feed(html)
    fetching = [(t, n, v) for t, n, v in parser.attributes if n in ("src", "href", "srcset", "action", "xlink:href")]
    assert all(v.startswith("#") for _, _, v in fetching), fetching
    assert not re.search(r"(?i)https?:|url\(|@import|<script|<link|<img|<iframe", html)
    csp = [v for t, n, v in parser.attributes if t == "meta" and n == "content" and "default-src" in v]
    assert csp == ["default-src 'none'; style-src 'unsafe-inline'"]


def test_chart_has_a_bar_pair_and_an_slo_line_per_service_and_flags_a_missed_slo() -> None:
    rec = reportdata.record()
    canary = rec.units["cpu/model-ops-coordinator"].verdicts.canary
    assert canary is not None
    canary.p95_ms, canary.passed = 312.5, False
    svg = latency_chart(report(rec).canaried())
    assert svg.count('<g class="service"') == 3 and svg.count("stroke-dasharray") == 4  # 3 SLO lines + legend
    assert "p95 312.5 ms" in svg and 'fill="#cf222e"><title>cpu/model-ops-coordinator p95 312.5 ms' in svg
    assert "p95 71.6 ms" in svg
    ticks = [float(v) for v in re.findall(r'text-anchor="middle">([0-9.]+)</text>', svg)]
    assert ticks[0] == 0 and 312.5 < ticks[-1] < 2 * 312.5  # the axis reaches just past the slowest p95


def test_canary_without_a_measurement_says_so() -> None:
    rec = reportdata.record()
    canary = rec.units["cpu/model-ops-coordinator"].verdicts.canary
    assert canary is not None
    canary.p50_ms, canary.p95_ms, canary.passed = None, None, False
    svg = latency_chart(report(rec).canaried())
    assert "p50: no measurement" in svg and "p95: no measurement" in svg


def test_a_release_that_only_was_built() -> None:
    rec = reportdata.record()
    for unit in rec.units.values():
        unit.verdicts = UnitVerdicts()
    md = render_markdown(report(rec, verify=False, findings={}, ledgers={"canary": []}))
    assert "- verify: not run\n- scan: not run\n- canary: not run\n" in md
    assert "No canary verdicts in this release." in md and "No findings in the scan reports." in md
    assert row_of(section(md, "## Profile cpu"), "family-ml")[6:9] == ["not verified", "not scanned", "—"]
    assert "<svg" not in render_html(report(rec, verify=False, findings={}, ledgers={}))


def test_ledgers_are_read_from_the_registry() -> None:
    mem = MemoryRegistry()
    target = parse_registry("localhost:5000/acme")
    with RegistryClient(target, transport=httpx.MockTransport(mem.handle)) as registry:
        for ledger in reportdata.ledgers().values():
            save_ledger(registry, "acme", ledger)
        ledgers, note = fetch_ledgers(registry, "acme", ["canary", "stable", "nightly"])
    assert note == ""
    assert [len(v) for v in ledgers.values()] == [3, 2, 0]


def test_an_unreachable_registry_is_a_note_not_a_failure() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    target = parse_registry("localhost:5000/acme")
    policy = RetryPolicy(attempts=2, deadline_s=5)
    client = RegistryClient(target, transport=httpx.MockTransport(refuse), policy=policy, sleep=lambda _: None)
    with client as registry:
        ledgers, note = fetch_ledgers(registry, "acme", ["canary"])
    assert ledgers == {}
    assert note.startswith("Promotion history not shown: the registry localhost:5000/acme is not reachable (")
    assert "connection refused" in note


def test_cli_writes_both_files_and_prints_their_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reportdata.materialize(tmp_path, registry="127.0.0.1:9/nothing-listens")
    assert main(["--project", str(tmp_path), "report", "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    directory = tmp_path / ".shipyard" / "reports" / RELEASE
    assert paths == {"html": str(directory / "report.html"), "markdown": str(directory / "report.md")}
    md = Path(paths["markdown"]).read_text()
    assert "the registry 127.0.0.1:9/nothing-listens is not reachable" in md
    assert "not reachable" in Path(paths["html"]).read_text()
    assert sorted(p.name for p in directory.iterdir()) == ["report.html", "report.md", "scan", "verify.json"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "../x"], "RELEASE '../x': not a valid OCI tag"),
        (["report", "20990101-00000000"], "RELEASE 20990101-00000000: no release record"),
        (["report", "--channel", "Stable!"], "--channel: 'Stable!': use a lowercase name"),
    ],
)
def test_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    reportdata.materialize(tmp_path, registry="127.0.0.1:9/nothing-listens")
    assert main(["--project", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_where_it_runs_comes_from_the_deployment_ledgers() -> None:
    rec = reportdata.record()
    mine = {u.image: u.ref for k, u in rec.units.items() if k.startswith("cpu/") and u.kind == "service"}
    other = {service: ref.split("@")[0] + "@sha256:" + "f" * 64 for service, ref in mine.items()}

    def entry(release: str, images: dict[str, str], state: str, p95: float | None = None) -> Deployment:
        at = f"{release[:4]}-{release[4:6]}-{release[6:8]}T09:00:00Z"
        return Deployment(release, "channel stable", images, {}, {}, {}, at=at, state=state,  # type: ignore[arg-type]
                          strategy="blue-green", p95_ms=p95)  # fmt: skip

    deployments: dict[str, list[Deployment] | str] = {
        "local": [entry(PREVIOUS, other, "complete"), entry(RELEASE, mine, "complete", 48.5)],
        "mainpc": [entry(RELEASE, mine, "complete", 51.0), entry(NEXT, other, "complete")],
        "pc2": [entry(RELEASE, mine, "rolled-back")],
        "edge": [],
        "far": "The deployment ledger of far could not be read: HTTP 500",
    }
    md = render_markdown(replace(report(), placements=placements(rec, deployments)))
    where = section(md, "## Where it runs")
    assert row_of(where, "local") == ["local", "running", "2025-01-11T09:00:00Z", RELEASE, "blue-green", "48.5 ms"]
    assert row_of(where, "mainpc")[1] == f"replaced by {NEXT}"
    assert row_of(where, "pc2")[1] == "rolled-back" and row_of(where, "edge")[1] == "not deployed"
    assert "could not be read: HTTP 500" in row_of(where, "far")[1]
    html = render_html(replace(report(), placements=placements(rec, deployments)))
    assert '<tr data-target="local"><td>local</td><td><span class="badge ok">running</span>' in html
