"""The release tag of a work tree: ``YYYYMMDD-<sha>`` from the HEAD commit."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GitStateError

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
        dirty = repo.is_dirty(untracked_files=True)
        if dirty and not allow_dirty:
            changed = [line[3:] for line in repo.git.status("--porcelain").splitlines()]
            shown = ", ".join(changed[:3]) + (" …" if len(changed) > 3 else "")
            raise GitStateError(
                f"{root}: work tree has uncommitted changes ({shown}); commit them "
                f"(git add -A && git commit) or pass --allow-dirty to tag …-dirty-<hash>"
            )
        dirty_hash = _dirty_hash(repo) if dirty else ""
        return Revision(sha=commit.hexsha, committed=committed, dirty=dirty, dirty_hash=dirty_hash)


def _dirty_hash(repo: git.Repo) -> str:
    """A short hash of the uncommitted state: the diff against HEAD plus untracked files."""
    h = hashlib.sha256()
    h.update(repo.git.diff("HEAD", "--binary").encode())
    workdir = Path(repo.working_tree_dir or repo.git_dir)  # a bare repository has no work tree
    for rel in sorted(repo.untracked_files):
        h.update(rel.encode())
        with contextlib.suppress(OSError):
            h.update((workdir / rel).read_bytes())
    return h.hexdigest()[:SHA_LEN]
