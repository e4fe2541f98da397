from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.cli.main import main
from tests.conftest import make_project


def test_dry_run_prints_plan_and_exact_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "p", services=("affective-processing-center",))
    monkeypatch.setenv("SHIPYARD_REGISTRY", "registry.invalid:5999/acme")  # nothing answers there
    monkeypatch.setenv("SHIPYARD_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["--project", str(root), "build", "--profile", "pc2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "release 20250111-" in out and "4 units (pc2)" in out
    assert out.count("+ docker buildx build") == 4
    assert "--cache-to type=registry,ref=registry.invalid:5999/acme/cache/pc2/family-web,mode=max" in out
    assert "--build-arg TORCH_CUDA_ARCH_LIST=8.6" in out
    assert not (root / ".shipyard" / "releases").exists()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["build", "--profile", "pc3", "--dry-run"], 2, "--profile: unknown profile 'pc3' (did you mean 'pc2'?)"),
        (["build", "--image", "famly-web", "--dry-run"], 2, "--image: unknown image 'famly-web'"),
        (["build", "--registry", "nohost", "--dry-run"], 2, "--registry: 'nohost': expected host[:port]/namespace"),
        (["plan", "--base-override", "x"], 2, "--base-override: expected 'local' or ROLE=REF"),
        (["promote", "../../etc/passwd", "--channel", "c"], 2, "RELEASE '../../etc/passwd': not a valid OCI tag"),
    ],
)
def test_bad_input_is_one_line_with_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    root = make_project(tmp_path / "p")
    assert main(["--project", str(root), *argv]) == code
    err = capsys.readouterr().err
    assert err.startswith(f"shipyard: error: {message}"), err
    assert err.count("\n") == 1


def test_dirty_tree_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p")
    (root / "profiles" / "cpu.json").write_text((root / "profiles" / "cpu.json").read_text() + "\n")
    assert main(["--project", str(root), "build", "--dry-run"]) == 3
    assert "uncommitted changes (profiles/cpu.json)" in capsys.readouterr().err


def test_plan_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_project(tmp_path / "p", profiles=("cpu",))
    assert main(["--project", str(root), "plan", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [u["key"] for u in data["units"]] == ["cpu/base-python", "cpu/family-web", "cpu/family-ml"]
    assert data["units"][0]["parent"] == "local:debian-bookworm-python"


def test_missing_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--project", str(tmp_path), "plan"]) == 2
    assert "no shipyard.toml there" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["build", "--jobs", "0"], "argument --jobs: expected a positive whole number, got '0' (see `shipyard build"),
        (["promote", "20250111-656873b3"], "the following arguments are required: --channel"),
        (["bild"], "argument COMMAND: invalid choice: 'bild'"),
    ],
)
def test_usage_errors_are_one_line_too(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"shipyard: error: {message}") and err.count("\n") == 1, err
