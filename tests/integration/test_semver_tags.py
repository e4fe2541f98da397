"""A ``v1.4.2`` git tag on HEAD: every unit is also pushed as ``1.4.2`` and ``1.4``, checked in the registry
itself, and the release is verified and promoted by those names; a dirty tree gets none of them."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from shipyard.record import ReleaseRecord, load_record
from tests.conftest import git, make_project
from tests.integration.conftest import isolated, registry_digest, shipyard

LOCAL = {"SHIPYARD_BASE_OVERRIDE": "local"}


def release_of(root: Path) -> ReleaseRecord:
    records = sorted((root / ".shipyard" / "releases").glob("*.json"), key=lambda p: p.stat().st_mtime)
    return load_record(records[-1])


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReleaseRecord, str]:
    root = isolated(make_project(tmp_path_factory.mktemp("semver") / "p", profiles=("cpu",)))
    git(root, "tag", "v1.4.2")
    result = shipyard("--project", str(root), "build", env=LOCAL)
    sha = git(root, "rev-parse", "HEAD")
    record = load_record(root / ".shipyard" / "releases" / f"20250111-{sha[:8]}.json")
    return root, record, result.stdout


def test_a_v_tag_on_head_pushes_its_semver_tags_with_every_unit(tagged) -> None:  # type: ignore[no-untyped-def]
    root, record, stdout = tagged
    assert record.aliases == ["1.4.2", "1.4"]
    assert set(record.units) == {"cpu/base-python", "cpu/family-web", "cpu/family-ml"}
    for key, unit in record.units.items():
        for tag in (record.release, "1.4.2", "1.4"):
            assert registry_digest(unit.repository, tag) == unit.digest, (key, tag)
    assert f"release {record.release} (also 1.4.2, 1.4):" in stdout
    assert "also tagged 1.4.2, 1.4" in stdout


def test_the_release_is_verified_and_promoted_by_its_semver_names(tagged) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = tagged
    verify = shipyard("--project", str(root), "verify", "1.4.2")
    assert f"({record.release}.json)" in verify.stdout and "checks passed" in verify.stdout
    report = json.loads((root / ".shipyard" / "reports" / record.release / "verify.json").read_text())
    tags = sorted((f["unit"], f["expected"].split(" ")[0]) for f in report["findings"] if f["check"] == "tag")
    assert tags == sorted((key, tag) for key in record.units for tag in (record.release, "1.4.2", "1.4"))
    # no service in this project, so no canary verdict: forced, as a release without services must be
    shipyard(
        "--project", str(root), "promote", "1.4", "--channel", "stable", "--force", "--reason", "semver alias test"
    )
    for key, unit in record.units.items():
        assert registry_digest(unit.repository, "stable") == unit.digest, key
    history = json.loads(shipyard("history", "--channel", "stable", "--json").stdout)
    assert history["entries"][-1]["release"] == record.release and history["entries"][-1]["state"] == "complete"


def test_a_dirty_tree_gets_no_semver_tag(tagged) -> None:  # type: ignore[no-untyped-def]
    root, clean, _ = tagged
    # a version of this run alone: the registry outlives test runs, and an earlier push must not hide one
    version = f"0.{secrets.randbelow(10**6)}.1"
    git(root, "commit", "-q", "--allow-empty", "-m", "next", date="2025-01-12T12:00:00+00:00")
    git(root, "tag", f"v{version}")
    (root / "notes.txt").write_text("work in progress\n")
    result = shipyard("--project", str(root), "build", "--allow-dirty", env=LOCAL)
    assert f"tag v{version} on HEAD not applied: the tree is dirty" in result.stdout, result.stdout
    dirty = release_of(root)
    assert "-dirty-" in dirty.release and dirty.aliases == [] and set(dirty.units) == set(clean.units)
    for key, unit in dirty.units.items():
        assert registry_digest(unit.repository, dirty.release) == unit.digest, key
        assert registry_digest(unit.repository, version) is None, key
        assert registry_digest(unit.repository, version.rsplit(".", 1)[0]) is None, key
