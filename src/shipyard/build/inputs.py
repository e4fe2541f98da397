"""Input digests: everything a build unit's image depends on, hashed, so an unchanged unit is reused.

The digest covers the Dockerfile as rendered without the release-specific labels (revision,
created, version), every file of the build context the build can see (``.dockerignore``
respected), the named contexts (wheelhouse, tools), the build args, the platform and the
parent's digest. A moved upstream tag or a rebuilt parent changes the parent digest and so
every descendant's digest.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INPUTS_TAG_PREFIX = "inputs-"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_file_hashes: dict[tuple[str, int, int], Future[str]] = {}
_file_hashes_lock = threading.Lock()


def file_hash(path: Path) -> str:
    """sha256 of a file, read once per process while its size and mtime stay (by one thread while the
    others wait for it): the units of every profile share their family's context, the wheelhouse and
    the tools, and hash them at the same time."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _file_hashes_lock:
        pending = _file_hashes.get(key)
        mine = pending is None
        if pending is None:
            pending = _file_hashes[key] = Future()
    if mine:
        try:
            pending.set_result(_sha(path.read_bytes()))
        except BaseException as exc:
            with _file_hashes_lock:
                del _file_hashes[key]  # the next caller tries again
            pending.set_exception(exc)
    return pending.result()


def dockerignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.lstrip("/") if not line.startswith("!") else "!" + line[1:].lstrip("/"))
    return patterns


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches everything below a directory."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.removesuffix("/")
        if any(fnmatch.fnmatchcase(p, body) or fnmatch.fnmatchcase(p, body.replace("**/", "")) for p in prefixes):
            ignored = not negate
    return ignored


def context_files(context: Path) -> dict[str, str]:
    """relative path -> sha256 of every file the build can see."""
    patterns = dockerignore_patterns(context)
    files = {}
    for path in sorted(context.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(context).as_posix()
        if not _ignored(rel, patterns):
            files[rel] = file_hash(path)
    return files


def directory_hash(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0" + file_hash(path).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class InputSet:
    dockerfile: str  # hash of the identity rendering
    build_args: Mapping[str, str]
    platform: str
    parent: str  # parent digest (or pinned reference)
    contexts: Mapping[str, str] = field(default_factory=dict)  # named context -> hash
    files: Mapping[str, str] = field(default_factory=dict)  # context file -> hash

    @property
    def digest(self) -> str:
        return _sha(json.dumps(asdict(self), sort_keys=True).encode())

    @property
    def tag(self) -> str:
        """The registry tag under which an image built from these inputs is found."""
        return INPUTS_TAG_PREFIX + self.digest[:40]

    def to_record(self) -> dict[str, Any]:
        return {"digest": self.digest, **asdict(self)}


def compute_inputs(
    *,
    dockerfile: str,
    build_args: Mapping[str, str],
    platform: str,
    parent: str,
    context: Path,
    named_contexts: Mapping[str, Path],
) -> InputSet:
    return InputSet(
        dockerfile=_sha(dockerfile.encode()),
        build_args=dict(sorted(build_args.items())),
        platform=platform,
        parent=parent.rpartition("@")[2] if "@" in parent else parent,
        contexts={name: directory_hash(path) for name, path in sorted(named_contexts.items())},
        files=context_files(context),
    )


def why_changed(old: Mapping[str, Any] | None, new: InputSet) -> list[str]:
    """Which inputs differ from the last build of this unit (for the "rebuilt because …" line)."""
    if not old:
        return ["no earlier build of this unit"]
    reasons = []
    if old.get("parent") != new.parent:
        reasons.append("parent image changed")
    if old.get("dockerfile") != new.dockerfile:
        reasons.append("Dockerfile changed")
    if old.get("build_args") != dict(new.build_args):
        changed = sorted(
            k
            for k in set(old.get("build_args", {})) | set(new.build_args)
            if old.get("build_args", {}).get(k) != new.build_args.get(k)
        )
        reasons.append("build args changed: " + ", ".join(changed))
    if old.get("platform") != new.platform:
        reasons.append("platform changed")
    for name in sorted(set(old.get("contexts", {})) | set(new.contexts)):
        if old.get("contexts", {}).get(name) != new.contexts.get(name):
            reasons.append(f"build context {name!r} changed")
    old_files: Mapping[str, str] = old.get("files", {})
    changed_files = sorted(f for f in set(old_files) | set(new.files) if old_files.get(f) != new.files.get(f))
    if changed_files:
        shown = ", ".join(changed_files[:3]) + (f" (+{len(changed_files) - 3} more)" if len(changed_files) > 3 else "")
        reasons.append(f"context files changed: {shown}")
    return reasons or ["inputs equal, but no image with them in the registry"]
