from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.build.revision import read_revision
from shipyard.errors import GitStateError
from tests.conftest import git


def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "a.txt").write_text("a")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "one", date="2025-01-11T23:30:00-05:00")
    return tmp_path


def test_tag_uses_utc_commit_date_and_short_sha(tmp_path: Path) -> None:
    root = repo(tmp_path)
    sha = git(root, "rev-parse", "HEAD")
    rev = read_revision(root)
    # 23:30 at UTC-5 is the next day in UTC
    assert rev.release_tag == f"20250112-{sha[:8]}"
    assert rev.created == "2025-01-12T04:30:00Z"
    assert read_revision(root).release_tag == rev.release_tag  # same commit, same tag


def test_dirty_tree_is_refused_then_tagged_with_allow_dirty(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "a.txt").write_text("changed")
    with pytest.raises(GitStateError, match=r"uncommitted changes \(a.txt\).*--allow-dirty"):
        read_revision(root)
    first = read_revision(root, allow_dirty=True).release_tag
    assert "-dirty-" in first
    (root / "a.txt").write_text("changed again")
    assert read_revision(root, allow_dirty=True).release_tag != first


def test_untracked_file_makes_tree_dirty(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "new.txt").write_text("x")
    with pytest.raises(GitStateError, match=r"new.txt"):
        read_revision(root)


def test_no_commits_and_no_repo(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    git(tmp_path / "empty", "init", "-q")
    with pytest.raises(GitStateError, match="no commits yet"):
        read_revision(tmp_path / "empty")
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitStateError, match="not a git repository"):
        read_revision(tmp_path / "plain")


def test_shipyards_own_state_never_makes_the_tree_dirty(tmp_path: Path) -> None:
    """No .gitignore in the repository: what shipyard writes under .shipyard/ is still not a change."""
    root = repo(tmp_path)
    (root / ".shipyard" / "releases").mkdir(parents=True)
    (root / ".shipyard" / "releases" / "20250112-abc.json").write_text("{}")
    clean = read_revision(root)
    assert not clean.dirty and "-dirty-" not in clean.release_tag
    (root / "new.txt").write_text("x")  # a change of the user's still counts, and only it is named
    with pytest.raises(GitStateError, match=r"uncommitted changes \(new.txt\)"):
        read_revision(root)
    dirty = read_revision(root, allow_dirty=True)
    (root / ".shipyard" / "releases" / "20250112-abc.json").write_text('{"more": 1}')
    assert read_revision(root, allow_dirty=True).release_tag == dirty.release_tag


def test_a_project_in_a_subfolder_leaves_out_its_own_state_only(tmp_path: Path) -> None:
    root = repo(tmp_path)
    project = root / "images"
    (project / ".shipyard").mkdir(parents=True)
    (project / ".shipyard" / "x.json").write_text("{}")
    assert not read_revision(project).dirty
    (root / ".shipyard").mkdir()  # not this project's state folder: an ordinary untracked file
    (root / ".shipyard" / "y").write_text("y")
    with pytest.raises(GitStateError, match=r"\.shipyard/"):
        read_revision(project)
