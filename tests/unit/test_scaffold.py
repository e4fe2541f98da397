"""``shipyard init``: what it writes loads as a project, and nothing that is there is overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.build.plan import make_plan
from shipyard.build.render import RenderInputs, TemplateRenderer
from shipyard.cli.main import main
from shipyard.config.project import load_project
from shipyard.config.registry import parse_registry


def test_init_writes_a_project_that_plans_and_renders(tmp_path: Path) -> None:
    root = tmp_path / "Team Images"
    assert main(["init", str(root)]) == 0
    project = load_project(root)
    assert project.catalog.project_name == "team-images"
    assert set(project.profiles) == {"cpu"}  # the GPU profile is an example to rename
    assert (root / "profiles" / "gpu.json.example").is_file()
    plan = make_plan(project.profiles, project.catalog, release_tag="20250111-abcdef12", target=parse_registry(None))
    assert [u.key for u in plan.units] == ["cpu/base", "cpu/hello"]
    renderer = TemplateRenderer(project.templates, project.catalog.policy)
    for unit in plan.units:
        text = renderer.render(RenderInputs(unit.profile, unit.image, "x@sha256:" + "a" * 64, {"k": "v"}))
        assert text.rstrip().endswith("USER 10001:10001") and "HEALTHCHECK" in text
    assert not list((root / "dockerfiles").rglob("*macros*"))  # the packaged macros serve it
    assert (root / ".gitignore").read_text().splitlines()[-1] == "/.shipyard/"
    local = project.catalog.targets["local"]  # a deploy target for this host's engine
    assert (local.profile, local.engine, local.canary) == ("cpu", "unix:///var/run/docker.sock", True)


def test_init_never_overwrites_and_says_what_it_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "cpu.json").write_text("{ their own }")
    (tmp_path / ".gitignore").write_text("*.pyc")  # no newline at the end
    assert main(["init", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "skipped profiles/cpu.json (exists)" in out and "created shipyard.toml" in out
    assert (tmp_path / "profiles" / "cpu.json").read_text() == "{ their own }"
    assert (tmp_path / ".gitignore").read_text().splitlines() == [
        "*.pyc",
        "# shipyard's own state (records, reports, rendered Dockerfiles)",
        "/.shipyard/",
    ]
    assert main(["--json", "init", str(tmp_path)]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert files and not any(f["created"] for f in files)  # a second init changes nothing
    assert (tmp_path / ".gitignore").read_text().count(".shipyard") == 1


def test_init_into_a_file_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("")
    assert main(["init", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err.startswith(f"shipyard: error: init {tmp_path / 'f'}: not a directory")
