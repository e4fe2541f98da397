from __future__ import annotations

import subprocess
from pathlib import Path

from shipyard.record import ReleaseRecord, save_record
from shipyard.state import make_dirs, project_state_dir
from tests.conftest import git


def test_the_first_write_gives_the_state_folder_a_gitignore_that_git_obeys(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "main")
    path = save_record(
        tmp_path,
        ReleaseRecord(
            release="20250111-abcdef12",
            revision="abcdef12",
            created="2025-01-11T00:00:00Z",
            registry="localhost:5000/x",
        ),
    )
    assert path.is_file() and path.is_relative_to(project_state_dir(tmp_path))
    assert (project_state_dir(tmp_path) / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path, capture_output=True, text=True
    )
    assert status.returncode == 0 and status.stdout == ""


def test_an_existing_state_folder_keeps_what_the_user_put_there(tmp_path: Path) -> None:
    (tmp_path / ".shipyard").mkdir()
    make_dirs(tmp_path / ".shipyard" / "rendered" / "cpu")
    assert (tmp_path / ".shipyard" / "rendered" / "cpu").is_dir()
    assert not (tmp_path / ".shipyard" / ".gitignore").exists()  # made by someone else: theirs to manage
    make_dirs(tmp_path / "elsewhere" / "deep")
    assert (tmp_path / "elsewhere" / "deep").is_dir() and not (tmp_path / "elsewhere" / ".gitignore").exists()
