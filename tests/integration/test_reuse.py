"""Input-digest reuse and the bake export against the real engine and registry."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from shipyard.record import ReleaseRecord, load_record
from tests.conftest import git, make_project
from tests.integration.conftest import isolated, shipyard

LOCAL = {"SHIPYARD_BASE_OVERRIDE": "local"}
SERVICE = "affective-processing-center"


def release_of(root: Path) -> ReleaseRecord:
    sha = git(root, "rev-parse", "HEAD")
    date = git(root, "show", "-s", "--format=%cd", "--date=format-local:%Y%m%d", "HEAD")
    return load_record(root / ".shipyard" / "releases" / f"{date}-{sha[:8]}.json")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReleaseRecord]:
    root = isolated(
        make_project(tmp_path_factory.mktemp("reuse") / "proj", services=(SERVICE,), profiles=("cpu", "pc2"))
    )
    shipyard("--project", str(root), "build", "--no-reuse", "--jobs", "1", env=LOCAL)
    return root, release_of(root)


def test_unchanged_tree_reuses_every_unit_without_building(project) -> None:  # type: ignore[no-untyped-def]
    root, first = project
    assert all(not u.reused_from and u.steps > 0 for u in first.units.values())
    git(root, "commit", "-q", "--allow-empty", "-m", "docs only", date="2025-01-13T12:00:00+00:00")
    result = shipyard("--project", str(root), "build", "-v", env=LOCAL)
    assert "docker buildx build" not in result.stdout
    second = release_of(root)
    assert second.release != first.release and set(second.units) == set(first.units)
    for key, unit in second.units.items():
        assert unit.reused_from == first.release, key
        assert unit.digest == first.units[key].digest, key
        assert unit.attestations == first.units[key].attestations and unit.attestations["sbom"], key
    verify = shipyard("--project", str(root), "verify", second.release)
    assert "checks passed" in verify.stdout


def test_changing_one_service_rebuilds_exactly_that_service(project) -> None:  # type: ignore[no-untyped-def]
    root, first = project
    source = root / "services" / SERVICE / "affective_processing_center" / "__init__.py"
    # unique per run: the registry outlives test runs, and an earlier run's image of this change would be reused
    source.write_text(source.read_text() + f"\n# changed {uuid.uuid4()}\n")
    git(root, "commit", "-qam", "change the service", date="2025-01-14T12:00:00+00:00")
    result = shipyard("--project", str(root), "build", env=LOCAL)
    third = release_of(root)
    rebuilt = sorted(k for k, u in third.units.items() if not u.reused_from)
    assert rebuilt == [f"cpu/{SERVICE}", f"pc2/{SERVICE}"]
    assert "context files changed: affective_processing_center/__init__.py" in result.stdout
    assert third.units[f"cpu/{SERVICE}"].digest != first.units[f"cpu/{SERVICE}"].digest


def test_exported_bake_file_builds_with_docker_buildx_bake(project, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, _ = project
    bake = tmp_path / "docker-bake.json"
    shipyard("--project", str(root), "bake-file", "--profile", "cpu", "--output", str(bake), env=LOCAL)
    document = json.loads(bake.read_text())
    assert set(document["target"]) == {"cpu-base-python", "cpu-family-web", "cpu-family-ml", f"cpu-{SERVICE}"}
    assert document["target"]["cpu-family-web"]["contexts"]["shipyard-parent"] == "target:cpu-base-python"
    result = subprocess.run(["docker", "buildx", "bake", "-f", str(bake)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    tag = document["target"][f"cpu-{SERVICE}"]["tags"][0]
    inspect = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{tag}"], capture_output=True, text=True, check=True
    )
    assert json.loads(inspect.stdout)["Labels"]["io.shipyard.image"] == SERVICE


def test_a_repository_that_does_not_ignore_shipyards_state_builds_twice(tmp_path: Path) -> None:
    """shipyard's own .shipyard/ never dirties the tree: the second build of the commit reuses every unit."""
    root = isolated(make_project(tmp_path / "team", profiles=("cpu",), gitignore=False))
    assert not (root / ".gitignore").exists()
    first = shipyard("--project", str(root), "build", env=LOCAL)
    assert git(root, "status", "--porcelain", "--untracked-files=all") == "", "the build dirtied the tree"
    second = shipyard("--project", str(root), "build", "-v", env=LOCAL)
    assert "docker buildx build" not in second.stdout, second.stdout
    record = release_of(root)
    assert "-dirty-" not in record.release and record.units, first.stdout
    assert all(unit.reused_from for unit in record.units.values()), second.stdout


def test_a_no_reuse_rebuild_of_a_family_moves_none_of_its_children(tmp_path: Path) -> None:
    """A rebuild from cache gives a new index (its provenance records the build) but, built with
    SOURCE_DATE_EPOCH, the same platform manifest, which is what the children's FROM names."""
    root = isolated(make_project(tmp_path / "proj", services=(SERVICE,), profiles=("cpu",)))
    shipyard("--project", str(root), "build", env=LOCAL)
    first = release_of(root)
    rebuilt = shipyard("--project", str(root), "build", "--no-reuse", "--image", "family-web", env=LOCAL)
    assert "cpu/family-web: building (--no-reuse)" in rebuilt.stdout, rebuilt.stdout
    again = release_of(root)
    family, before = again.units["cpu/family-web"], first.units["cpu/family-web"]
    assert family.digest != before.digest and family.image_digest == before.image_digest
    children = [k for k in first.units if k not in ("cpu/base-python", "cpu/family-web")]
    of_family = [k for k in children if "/cpu/family-web@" in first.units[k].parent]
    assert of_family and all(first.units[k].parent.endswith("@" + before.image_digest) for k in of_family)
    result = shipyard("--project", str(root), "build", "-v", env=LOCAL)
    assert "docker buildx build" not in result.stdout, result.stdout
    last = release_of(root)
    assert [k for k in children if last.units[k].digest != first.units[k].digest] == []
    print(f"\n--no-reuse of cpu/family-web, then a build: 0 of {len(children)} children rebuilt")
