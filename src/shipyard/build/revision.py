"""The release tag of a work tree: ``YYYYMMDD-<sha>`` from the HEAD commit."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GitStateError
from ..state import state_dir

if TYPE_CHECKING:
    import git

SHA_LEN = 8


@dataclass(frozen=True)
class Revision:
    sha: str
    committed: datetime  # UTC
    dirty: bool
    dirty_hash: str = ""

    @property
    def release_tag(self) -> str:
        tag = f"{self.committed:%Y%m%d}-{self.sha[:SHA_LEN]}"
        return f"{tag}-dirty-{self.dirty_hash}" if self.dirty else tag

    @property
    def created(self) -> str:
        return self.committed.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_revision(root: Path, *, allow_dirty: bool = False) -> Revision:
    """HEAD's sha and UTC commit date; refuses a dirty tree unless ``allow_dirty``."""
    import git  # gitpython is slow to import; only commands that tag need it

    try:
        repo = git.Repo(root, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise GitStateError(
            f"{root}: not a git repository; release tags come from the HEAD commit "
            f"(git init && git add -A && git commit -m 'first')"
        ) from None
    with repo:
        try:
            commit = repo.head.commit
        except ValueError:
            raise GitStateError(
                f"{root}: the repository has no commits yet; commit first (git add -A && git commit -m 'first')"
            ) from None
        committed = datetime.fromtimestamp(commit.committed_date, tz=UTC)
        own_state = _own_state(repo, root)
        changed = [line[3:] for line in repo.git.status("--porcelain", "--", *own_state).splitlines()]
        dirty = bool(changed)
        if dirty and not allow_dirty:
            shown = ", ".join(changed[:3]) + (" …" if len(changed) > 3 else "")
            raise GitStateError(
                f"{root}: work tree has uncommitted changes ({shown}); commit them "
                f"(git add -A && git commit) or pass --allow-dirty to tag …-dirty-<hash>"
            )
        dirty_hash = _dirty_hash(repo, own_state) if dirty else ""
        return Revision(sha=commit.hexsha, committed=committed, dirty=dirty, dirty_hash=dirty_hash)


def _own_state(repo: git.Repo, root: Path) -> list[str]:
    """The pathspec that leaves the project's ``.shipyard/`` out of git's view: shipyard writes it, so it
    is never a change of the user's (their repository need not ignore it)."""
    top = Path(repo.working_tree_dir or repo.git_dir).resolve()
    try:
        state = state_dir(root.resolve()).relative_to(top)
    except ValueError:  # the project is not inside this work tree
        return []
    return [f":(top,exclude){state.as_posix()}"]


def _dirty_hash(repo: git.Repo, pathspec: list[str]) -> str:
    """A short hash of the uncommitted state: the diff against HEAD plus untracked files."""
    h = hashlib.sha256()
    h.update(repo.git.diff("HEAD", "--binary", "--", *pathspec).encode())
    workdir = Path(repo.working_tree_dir or repo.git_dir)  # a bare repository has no work tree
    untracked = repo.git.ls_files("--others", "--exclude-standard", "-z", "--", *pathspec).split("\0")
    for rel in sorted(filter(None, untracked)):
        h.update(rel.encode())
        with contextlib.suppress(OSError):
            h.update((workdir / rel).read_bytes())
    return h.hexdigest()[:SHA_LEN]
