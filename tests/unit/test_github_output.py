"""GitHub Actions output: groups from buffered output, stop-commands, ::error annotations, the job summary."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from shipyard.build.render import TemplateRenderer, check_templates
from shipyard.cli.main import main
from shipyard.cli.output.github import GitHubConsole, annotation_path, error_command, escape_data
from shipyard.config.project import load_project
from shipyard.errors import BuildError, ConfigError
from shipyard.events import Event
from tests.conftest import make_project


def console(verbosity: int = 0, **kwargs: object) -> tuple[GitHubConsole, io.StringIO]:
    stream = io.StringIO()
    ticks = iter(float(i) for i in range(1000))
    return GitHubConsole(verbosity, stream=stream, clock=lambda: next(ticks), **kwargs), stream  # type: ignore[arg-type]


def test_interleaved_build_output_is_grouped_per_unit_when_it_is_done() -> None:
    gh, out = console()
    for unit, line in [("cpu/a", "#1 [1/2] FROM x"), ("cpu/b", "#1 [1/1] RUN true"), ("cpu/a", "#2 [2/2] RUN ok")]:
        gh.event(Event("build.output", line, unit=unit))
    assert out.getvalue() == ""  # nothing while they build: the lines of both units are interleaved
    gh.event(Event("unit.built", "[1/2] cpu/a: built in 3.0s", unit="cpu/a"))
    gh.event(Event("unit.failed", "[2/2] cpu/b: FAILED (exit 1)", unit="cpu/b"))
    lines = out.getvalue().splitlines()
    token = lines[1].removeprefix("::stop-commands::")
    assert len(token) == 32
    assert lines == [
        "::group::[   1.0s] [1/2] cpu/a: built in 3.0s",
        f"::stop-commands::{token}",
        "#1 [1/2] FROM x",
        "#2 [2/2] RUN ok",
        f"::{token}::",
        "::endgroup::",
        "::group::[   2.0s] [2/2] cpu/b: FAILED (exit 1)",
        f"::stop-commands::{token}",
        "#1 [1/1] RUN true",
        f"::{token}::",
        "::endgroup::",
    ]


def test_a_reused_unit_without_output_is_a_plain_line_and_quiet_keeps_only_failures() -> None:
    gh, out = console()
    gh.event(Event("unit.built", "[1/1] cpu/a: reused 20250110-x", unit="cpu/a"))
    assert out.getvalue() == "[   1.0s] [1/1] cpu/a: reused 20250110-x\n"
    quiet, out = console(-1)
    quiet.event(Event("build.output", "#1 x", unit="cpu/a"))
    quiet.event(Event("unit.built", "cpu/a: built", unit="cpu/a"))
    quiet.event(Event("build.output", "#1 y", unit="cpu/b"))
    quiet.event(Event("unit.failed", "cpu/b: FAILED", unit="cpu/b"))
    assert "cpu/a" not in out.getvalue() and "::group::[   1.0s] cpu/b: FAILED" in out.getvalue()


def test_a_huge_log_keeps_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shipyard.cli.output.github.MAX_GROUP_LINES", 3)
    gh, out = console()
    for i in range(5):
        gh.event(Event("build.output", f"line {i}", unit="u"))
    gh.event(Event("unit.failed", "u: FAILED", unit="u"))
    body = out.getvalue().splitlines()[2:-2]
    assert body == ["… 2 earlier lines left out", "line 2", "line 3", "line 4"]


def test_workflow_command_escaping() -> None:
    assert escape_data("50% done\r\nnext") == "50%25 done%0D%0Anext"
    assert (
        error_command("bad: x\nline 2", file="dockerfiles/a,b.j2", line=7, title="shipyard build")
        == "::error file=dockerfiles/a%2Cb.j2,line=7,title=shipyard build::bad: x%0Aline 2"
    )
    assert error_command("no file", line=3) == "::error::no file"


def test_annotation_paths_are_relative_to_the_workspace(tmp_path: Path) -> None:
    project = tmp_path / "repo" / "deploy"
    assert annotation_path("profiles/pc2.json", project, tmp_path / "repo") == "deploy/profiles/pc2.json"
    assert annotation_path("profiles/pc2.json", project, None) == str(project / "profiles/pc2.json")


def test_a_template_error_is_annotated_at_its_file_and_line(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", profiles=("cpu",))
    template = root / "dockerfiles" / "base-python.Dockerfile.j2"
    lines = template.read_text().splitlines()
    lines.insert(3, "RUN echo {{ profile.no_such_field }}")
    template.write_text("\n".join(lines) + "\n")
    project = load_project(root)
    with pytest.raises(ConfigError) as err:
        check_templates(
            TemplateRenderer(project.templates), [(project.profiles["cpu"], project.catalog.image("base-python"))]
        )
    assert (err.value.file, err.value.line) == ("dockerfiles/base-python.Dockerfile.j2", 4)
    assert str(err.value).startswith("dockerfiles/base-python.Dockerfile.j2:4: undefined variable")
    gh, out = console(workspace=tmp_path)
    gh.failed(err.value, "build", root)
    assert out.getvalue().startswith(
        "::error file=p/dockerfiles/base-python.Dockerfile.j2,line=4,title=shipyard build::"
    )


def test_main_annotates_a_profile_error_and_writes_the_failure_to_the_job_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "p", profiles=("cpu", "pc2"))
    profile = root / "profiles" / "pc2.json"
    profile.write_text(profile.read_text().replace('"linux/amd64"', '"linux/s390x"'))
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    assert main(["--project", str(root), "plan"]) == 2
    out, err = capsys.readouterr()
    line = next(n for n, text in enumerate(profile.read_text().splitlines(), 1) if "s390x" in text)
    assert out == (
        f"::error file=p/profiles/pc2.json,line={line},title=shipyard plan::profiles/pc2.json: platform: "
        "expected linux/amd64 or linux/arm64, got 'linux/s390x'\n"
    )
    assert err.startswith("shipyard: error: profiles/pc2.json: platform:") and err.count("\n") == 1
    assert summary.read_text().startswith("### shipyard plan failed\n\n```text\nprofiles/pc2.json: platform:")


def test_an_error_without_a_file_is_annotated_without_one() -> None:
    gh, out = console()
    gh.failed(BuildError("2 unit(s) failed (cpu/a, cpu/b)\ncpu/a: exit 1"), "build", Path("/p"))
    assert out.getvalue() == "::error title=shipyard build::2 unit(s) failed (cpu/a, cpu/b)%0Acpu/a: exit 1\n"
