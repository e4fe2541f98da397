"""The GitHub job summary: a recorded release (tests/data/summary-release.json) as Markdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.cli.output.summary import markdown_failure, markdown_summary
from shipyard.record import ReleaseRecord, load_record
from shipyard.verdicts import CanaryVerdict, UnitVerdicts

RECORD = Path(__file__).parent.parent / "data" / "summary-release.json"


@pytest.fixture
def record() -> ReleaseRecord:
    return load_record(RECORD)


def rows(text: str) -> list[list[str]]:
    """The table's body rows, cells stripped (header and separator left out)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")][1:]
    return [[cell.strip() for cell in ln.strip("|").split(" | ")] for ln in lines]


def test_one_row_per_image_and_profile_families_first(record: ReleaseRecord) -> None:
    table = rows(markdown_summary(record, "scan", {}))
    assert len(table) == len(record.units) == 12
    images = [r[0] for r in table if r[0]]  # the image is named on its first row only
    assert images == [
        "base-python",
        "family-web",
        "family-ml",
        "affective-processing-center",
        "model-ops-coordinator",
        "real-time-audio-pipeline",
    ]
    assert [r[1] for r in table[:2]] == ["cpu", "pc2"]


def test_cells_come_from_the_record(record: ReleaseRecord) -> None:
    text = markdown_summary(record, "canary", {})
    by_unit = {}
    image = ""
    for row in rows(text):
        image = row[0] or image
        by_unit[f"{row[1]}/{image}"] = row
    unit = record.units["cpu/model-ops-coordinator"]
    assert by_unit["cpu/model-ops-coordinator"][2:] == [
        f"`{unit.digest[:19]}`",
        "116.0 MB",
        "cached, 1/1 steps",
        "✅",
        "✅ 0/3/6/12",
        "✅ 47.9 ms (SLO 250)",
        "–",
    ]
    assert by_unit["pc2/base-python"][4] == "reused 20250110-1a2b3c4d"
    assert by_unit["pc2/model-ops-coordinator"][5] == "❌ size"
    assert by_unit["pc2/real-time-audio-pipeline"][6] == "❌ 1/3/6/12: CVE-2024-6345"
    assert by_unit["pc2/affective-processing-center"][7] == "–"  # the canary ran on cpu only
    assert text.startswith("### shipyard canary: release `20250111-5e5b1020`\n")
    assert "12 units: 10 built, 2 reused · verify 11/12 passed · scan 11/12 passed · canary 3/3 passed" in text


def test_promotion_column_and_headline(record: ReleaseRecord) -> None:
    cpu = [k for k in record.units if k.startswith("cpu/")]
    text = markdown_summary(record, "promote", {k: ["canary"] for k in cpu})
    promoted = [r[8] for r in rows(text)]
    assert promoted.count("canary") == 6 and promoted.count("–") == 6
    assert "promoted to canary: 6 units" in text


def test_a_stage_not_run_yet_shows_a_dash(record: ReleaseRecord) -> None:
    for unit in record.units.values():
        unit.verdicts = UnitVerdicts()
    table = rows(markdown_summary(record, "build", {}))
    assert {tuple(r[5:]) for r in table} == {("–", "–", "–", "–")}


def test_skipped_vulnerability_scan_is_said_and_pipes_are_escaped(record: ReleaseRecord) -> None:
    unit = record.units["cpu/base-python"]
    assert unit.verdicts.scan is not None
    unit.verdicts.scan.vulnerabilities = "skipped"
    unit.verdicts.canary = CanaryVerdict(passed=False, p95_ms=900.5, slo_p95_ms=250.0, reason="p95 | over SLO")
    text = markdown_summary(record, "scan", {})
    assert "**vulnerabilities not scanned**" in text
    assert "✅ secrets and misconfigurations only" in text
    assert "❌ 900.5 ms: p95 \\| over SLO" in text


def test_failure_section() -> None:
    text = markdown_failure("verify", "verify: 2 check(s) failed\n```x```")
    assert text == "### shipyard verify failed\n\n```text\nverify: 2 check(s) failed\n'''x'''\n```\n\n"
