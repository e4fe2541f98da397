"""The release tag of a work tree: ``YYYYMMDD-<sha>`` from the HEAD commit, and the semver aliases
(``1.4.2``, ``1.4``) of the ``v1.4.2`` git tags on it."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GitStateError
from ..state import state_dir

if TYPE_CHECKING:
    import git

SHA_LEN = 8
# semver.org's regex, with the leading "v" git tags usually have
SEMVER_RE = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<build>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


@dataclass(frozen=True)
class Revision:
    sha: str
    committed: datetime  # UTC
    dirty: bool
    dirty_hash: str = ""
    aliases: tuple[str, ...] = ()  # semver tags pushed next to the release tag ("1.4.2", "1.4")
    unapplied: tuple[str, ...] = ()  # semver git tags on HEAD that give no alias: the tree is dirty

    @property
    def release_tag(self) -> str:
        tag = f"{self.committed:%Y%m%d}-{self.sha[:SHA_LEN]}"
        return f"{tag}-dirty-{self.dirty_hash}" if self.dirty else tag

    @property
    def created(self) -> str:
        return self.committed.strftime("%Y-%m-%dT%H:%M:%SZ")


def read_revision(root: Path, *, allow_dirty: bool = False) -> Revision:
    """HEAD's sha, UTC commit date and semver aliases; refuses a dirty tree unless ``allow_dirty``."""
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
        tags = repo.git.tag("--points-at", "HEAD").splitlines()
        semver = tuple(tag for tag in tags if SEMVER_RE.match(tag))
        return Revision(
            sha=commit.hexsha,
            committed=committed,
            dirty=dirty,
            dirty_hash=dirty_hash,
            aliases=() if dirty else semver_aliases(semver),  # a dirty tree never gets a release's name
            unapplied=semver if dirty else (),
        )


def semver_aliases(tags: Iterable[str]) -> tuple[str, ...]:
    """The image tags of git tags, as docker/metadata-action's ``{{version}}`` and ``{{major}}.{{minor}}``:
    ``v1.4.2`` gives ``1.4.2`` and ``1.4``; a prerelease (``v1.4.2-rc.1``) only itself; build metadata
    (``+build.5``, which no OCI tag can hold) is left out, as node-semver's ``version`` leaves it out.
    Tags that are not semver give nothing; several give all their aliases, highest version first, each once.
    """
    versions = sorted({m for tag in tags if (m := _version(tag))}, key=_precedence, reverse=True)
    aliases: dict[str, None] = {}
    for major, minor, patch, pre in versions:
        aliases[f"{major}.{minor}.{patch}" + (f"-{pre}" if pre else "")] = None
        if not pre:
            aliases[f"{major}.{minor}"] = None
    return tuple(aliases)


_Version = tuple[int, int, int, str]


def _version(tag: str) -> _Version | None:
    m = SEMVER_RE.match(tag)
    return None if m is None else (int(m["major"]), int(m["minor"]), int(m["patch"]), m["pre"] or "")


def _precedence(version: _Version) -> tuple[int, int, int, bool, tuple[tuple[int, int, str], ...]]:
    """semver.org §11: a release above its prereleases; prerelease fields compared one by one,
    numbers numerically and below words, a shorter list below a longer one it starts."""
    major, minor, patch, pre = version
    fields = tuple((0, int(f), "") if f.isdigit() else (1, 0, f) for f in pre.split(".")) if pre else ()
    return major, minor, patch, not pre, fields


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
