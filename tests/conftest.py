"""Fixtures every test suite shares: git with fixed dates, and copies of this repo's catalog as projects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def git(cwd: Path, *args: str, date: str = "2025-01-11T12:00:00+00:00") -> str:
    env = {
        "GIT_AUTHOR_DATE": date,
        "GIT_COMMITTER_DATE": date,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_project(
    dest: Path,
    *,
    services: tuple[str, ...] = (),
    profiles: tuple[str, ...] = ("cpu", "mainpc", "pc2"),
    commit: bool = True,
    gitignore: bool = True,
    models: bool = True,
) -> Path:
    """A copy of this repo's catalog, reduced to the families and the given services, as a git repo
    (``gitignore=False``: one that does not ignore ``.shipyard/``, as a team's repository would not).

    The given services keep their models: the ``[models.*]`` tables they list and the ``models/<name>/``
    directories (the demo services refuse to start without them). ``models=False``: a copy with no models
    at all, neither tables nor the services' ``models`` keys, for a test that declares its own."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "dockerfiles", dest / "dockerfiles")
    shutil.copytree(REPO / "families", dest / "families")
    shutil.copytree(REPO / "keys", dest / "keys")  # the catalog's trusted_keys
    (dest / "profiles").mkdir()
    for name in profiles:
        shutil.copy(REPO / "profiles" / f"{name}.json", dest / "profiles")
    text = (REPO / "shipyard.toml").read_text()
    text = text.split("\n# Deploy targets")[0].split("\n[targets.")[0] + "\n"  # tests that deploy add their own
    model_table = re.compile(r"(?m)^\[models\.([^]]+)\]\n(?:[^[\n].*\n|\n)*")  # a table, up to the next one
    tables = {found[1]: found[0] for found in model_table.finditer(text)}
    blocks = model_table.sub("", text).split("\n[images.")
    kept = [blocks[0]]
    for block in blocks[1:]:
        name = block.split("]", 1)[0].split(".")[0]
        if name.startswith(("base-", "family-")) or name in services:
            kept.append(block)
    text = "\n[images.".join(kept)
    needed = [name for names in re.findall(r"(?m)^models = (\[[^]]*\])", text) for name in json.loads(names)]
    if models:
        text += "".join(f"\n{tables[name]}" for name in dict.fromkeys(needed))
        for name in dict.fromkeys(needed):
            shutil.copytree(REPO / "models" / name, dest / "models" / name)
    else:
        text = re.sub(r"(?m)^models = \[[^]]*\].*\n", "", text)
    (dest / "shipyard.toml").write_text(text)
    for svc in services:
        shutil.copytree(
            REPO / "services" / svc,
            dest / "services" / svc,
            ignore=shutil.ignore_patterns("__pycache__", "tests", "conftest.py"),
        )
    if gitignore:
        (dest / ".gitignore").write_text(".shipyard/\n")
    if commit:
        git(dest, "init", "-q", "-b", "main")
        git(dest, "add", "-A")
        git(dest, "commit", "-q", "-m", "fixture")
    return dest


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "proj", services=("affective-processing-center",))


@pytest.fixture(scope="session", autouse=True)
def _no_github_actions_output() -> Iterator[None]:
    """Tests pick their output mode themselves: on a GitHub runner, GITHUB_ACTIONS would put workflow commands
    in the output tests read, and GITHUB_STEP_SUMMARY the failures tests provoke in the job's summary."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY", "GITHUB_WORKSPACE"):
            patch.delenv(name, raising=False)
        yield
