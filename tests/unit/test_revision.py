from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.build.revision import read_revision, semver_aliases
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


@pytest.mark.parametrize(
    ("tags", "aliases"),
    [
        (["v1.4.2"], ("1.4.2", "1.4")),
        (["1.4.2"], ("1.4.2", "1.4")),
        (["v0.1.0"], ("0.1.0", "0.1")),
        (["v1.4.2-rc.1"], ("1.4.2-rc.1",)),  # a prerelease never takes major.minor
        (["v1.4.2+build.7"], ("1.4.2", "1.4")),  # build metadata: no OCI tag can hold the '+'
        (["v1.4.2+build.7", "v1.4.2-rc.1+b"], ("1.4.2", "1.4", "1.4.2-rc.1")),
        (["latest", "release-7", "v1.4", "v1.4.2.1", "v01.4.2", "V1.4.2", "v1.4.2-", "vv1.4.2", ""], ()),
        (["v1.4.2", "1.4.2", "v1.4.2"], ("1.4.2", "1.4")),  # the same version twice: once
        (["v1.4.2", "nightly", "v1.10.0", "v1.4.3-rc.1"], ("1.10.0", "1.10", "1.4.3-rc.1", "1.4.2", "1.4")),
        (["v2.0.0-rc.2", "v2.0.0", "v2.0.0-rc.10"], ("2.0.0", "2.0", "2.0.0-rc.10", "2.0.0-rc.2")),
        # semver precedence: numeric identifiers below alphanumeric ones, a longer list above its prefix
        (
            ["v1.0.0-1", "v1.0.0-alpha.1", "v1.0.0-alpha", "v1.0.0-alpha.beta"],
            (
                "1.0.0-alpha.beta",
                "1.0.0-alpha.1",
                "1.0.0-alpha",
                "1.0.0-1",
            ),
        ),
    ],
)
def test_semver_aliases_as_metadata_action_tags_them(tags: list[str], aliases: tuple[str, ...]) -> None:
    assert semver_aliases(tags) == aliases


def test_git_tags_on_head_give_the_aliases(tmp_path: Path) -> None:
    root = repo(tmp_path)
    git(root, "tag", "v1.4.1")  # on the first commit only
    git(root, "commit", "-q", "--allow-empty", "-m", "two")
    assert read_revision(root).aliases == ()
    git(root, "tag", "v1.4.2")  # lightweight
    git(root, "tag", "-a", "v1.5.0-rc.1", "-m", "rc")  # annotated
    git(root, "tag", "deployed-friday")
    rev = read_revision(root)
    assert rev.aliases == ("1.5.0-rc.1", "1.4.2", "1.4") and rev.unapplied == ()


def test_a_dirty_tree_gets_no_aliases_and_says_which_tags_it_left_out(tmp_path: Path) -> None:
    root = repo(tmp_path)
    git(root, "tag", "v1.4.2")
    git(root, "tag", "not-semver")
    (root / "a.txt").write_text("changed")
    rev = read_revision(root, allow_dirty=True)
    assert rev.dirty and rev.aliases == () and rev.unapplied == ("v1.4.2",)
