"""What machines and CI read from a real build: --json is the release record; GitHub Actions gets a job summary.

Both build a copy of the session's e2e project, whose every unit is in the registry already: reuse only, seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shipyard.record import ReleaseRecord, load_record
from tests.integration.conftest import shipyard

LOCAL = {"SHIPYARD_BASE_OVERRIDE": "local"}


@pytest.fixture
def copy(built: tuple[Path, ReleaseRecord, str], tmp_path: Path) -> tuple[Path, ReleaseRecord]:
    """The built project, copied: the session's own record is left as the other tests expect it."""
    root, record, _ = built
    copied = Path(shutil.copytree(root, tmp_path / "proj", symlinks=True))
    # the record as it is now: other tests rebuild units of the session's release (new provenance, new digests)
    return copied, load_record(copied / ".shipyard" / "releases" / f"{record.release}.json")


def test_build_json_is_the_release_record(copy: tuple[Path, ReleaseRecord]) -> None:
    root, record = copy
    result = shipyard("--project", str(root), "build", "--json", env=LOCAL)
    data = json.loads(result.stdout)  # one document, nothing around it
    saved = json.loads((root / ".shipyard" / "releases" / f"{record.release}.json").read_text())
    assert data == saved
    assert {k: u["digest"] for k, u in data["units"].items()} == {k: u.digest for k, u in record.units.items()}
    assert {u["reused_from"] for u in data["units"].values()} == {record.release}
    assert result.stderr == ""


def test_github_actions_gets_a_job_summary_and_plain_lines(copy: tuple[Path, ReleaseRecord], tmp_path: Path) -> None:
    root, record = copy
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = LOCAL | {"GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    result = shipyard("--project", str(root), "build", env=env)
    assert f"units pushed as {record.release}" in result.stdout  # the plain lines are all there
    assert "::group::" not in result.stdout  # reused units have no build output to fold
    text = summary.read_text()
    assert text.startswith(f"earlier step\n### shipyard build: release `{record.release}`\n")  # appended
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(record.units)
    for unit in record.units.values():
        assert any(f"`{unit.digest[:19]}`" in row and f"reused {record.release}" in row for row in rows), unit
