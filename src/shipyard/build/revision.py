"""The release tag of a work tree: ``YYYYMMDD-<sha>`` from the HEAD commit, and the semver aliases
(``1.4.2``, ``1.4``) of the ``v1.4.2`` git tags on it."""

from __future__ import annotations

import contextlib
import hashlib
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import GitStateError
from ..state import project_state_dir

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
    """HEAD's sha, UTC commit date and semver aliases; refuses a dirty tree unless ``allow_dirty``.

    Four ``git`` calls (a few milliseconds each) rather than GitPython, whose import alone costs
    about a tenth of a no-op release."""
    top = _git(root, "rev-parse", "--show-toplevel", missing=_not_a_repository(root)).strip()
    head = _git(root, "log", "-1", "--format=%H %ct", missing=_no_commits(root))
    sha, committed_at = head.split()
    committed = datetime.fromtimestamp(int(committed_at), tz=UTC)
    own_state = _own_state(Path(top), root)
    changed = [line[3:] for line in _git(root, "status", "--porcelain", "--", *own_state).splitlines()]
    dirty = bool(changed)
    if dirty and not allow_dirty:
        shown = ", ".join(changed[:3]) + (" …" if len(changed) > 3 else "")
        raise GitStateError(
            f"{root}: work tree has uncommitted changes ({shown}); commit them "
            f"(git add -A && git commit) or pass --allow-dirty to tag …-dirty-<hash>"
        )
    dirty_hash = _dirty_hash(root, Path(top), own_state) if dirty else ""
    tags = _git(root, "tag", "--points-at", "HEAD").splitlines()
    semver = tuple(tag for tag in tags if SEMVER_RE.match(tag))
    return Revision(
        sha=sha,
        committed=committed,
        dirty=dirty,
        dirty_hash=dirty_hash,
        aliases=() if dirty else semver_aliases(semver),  # a dirty tree never gets a release's name
        unapplied=semver if dirty else (),
    )


def _not_a_repository(root: Path) -> GitStateError:
    return GitStateError(
        f"{root}: not a git repository; release tags come from the HEAD commit "
        f"(git init && git add -A && git commit -m 'first')"
    )


def _no_commits(root: Path) -> GitStateError:
    return GitStateError(
        f"{root}: the repository has no commits yet; commit first (git add -A && git commit -m 'first')"
    )


def _git(root: Path, *argv: str, missing: GitStateError | None = None) -> str:
    return _git_bytes(root, *argv, missing=missing).decode(errors="surrogateescape")


def _git_bytes(root: Path, *argv: str, missing: GitStateError | None = None) -> bytes:
    """``git -C root …``'s stdout; ``missing`` is raised when git refuses (no repository, no commit).

    Not through the Runner: this reads the work tree's state, which a dry run needs too, and git's
    stderr must stay out of the porcelain output the Runner would merge it into."""
    if not root.is_dir():
        raise missing or _not_a_repository(root)
    try:
        done = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, check=False)
    except FileNotFoundError:
        raise GitStateError("git is not installed; release tags come from the HEAD commit (apt install git)") from None
    if done.returncode != 0:
        if missing is not None:
            raise missing
        first = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[0]
        raise GitStateError(f"{root}: git {argv[0]} failed (exit {done.returncode}): {first}")
    return done.stdout


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


def _own_state(top: Path, root: Path) -> list[str]:
    """The pathspec that leaves the project's ``.shipyard/`` out of git's view: shipyard writes it, so it
    is never a change of the user's (their repository need not ignore it)."""
    try:
        state = project_state_dir(root.resolve()).relative_to(top.resolve())
    except ValueError:  # the project is not inside this work tree
        return []
    return [f":(top,exclude){state.as_posix()}"]


def _dirty_hash(root: Path, top: Path, pathspec: list[str]) -> str:
    """A short hash of the uncommitted state: the diff against HEAD plus untracked files."""
    h = hashlib.sha256()
    h.update(_git_bytes(root, "diff", "HEAD", "--binary", "--", *pathspec))
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", "--", *pathspec).split("\0")
    for rel in sorted(filter(None, untracked)):
        h.update(rel.encode())
        with contextlib.suppress(OSError):
            h.update((top / rel).read_bytes())
    return h.hexdigest()[:SHA_LEN]
