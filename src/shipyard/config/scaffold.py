"""``shipyard init``: a working project written into a repository, never over a file that is there.

The files come from the package (resources/scaffold/): a catalog with a base image and one small
HTTP service, a ``cpu`` profile on the local base, a GPU profile to copy, templates that import
the packaged macros, and the ``.gitignore`` line for shipyard's own state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ..errors import ConfigError
from ..state import STATE_DIR

SCAFFOLD = resources.files("shipyard") / "resources" / "scaffold"
IGNORE_LINE = f"/{STATE_DIR}/"
NAME_RE = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class Written:
    path: str  # relative to the project
    created: bool  # False: it was there already and was left as it is


def _files(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found: list[tuple[str, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        rel = f"{prefix}{entry.name}"
        found += _files(entry, rel + "/") if entry.is_dir() else [(rel, entry)]
    return found


def project_name(root: Path) -> str:
    """The directory's name as a catalog would accept it (lowercase, no spaces)."""
    return NAME_RE.sub("-", root.resolve().name.lower()).strip("-._") or "project"


def scaffold(root: Path) -> list[Written]:
    """Write every scaffold file that ``root`` lacks, and the ``.gitignore`` line; return what happened."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"init {root}: not a directory; name a directory for the project (created if missing)")
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for rel, source in _files(SCAFFOLD):
        target = root / rel
        if target.exists():
            written.append(Written(rel, created=False))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        target.write_text(text.replace("{name}", project_name(root)) if rel == "shipyard.toml" else text)
        written.append(Written(rel, created=True))
    written.append(_ignore_state(root))
    return written


def _ignore_state(root: Path) -> Written:
    """Add ``/.shipyard/`` to the project's .gitignore (made if missing); nothing when it is listed."""
    path = root / ".gitignore"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    listed = {line.strip().rstrip("/").lstrip("/") for line in text.splitlines()}
    if STATE_DIR in listed:
        return Written(".gitignore", created=False)
    separator = "" if not text or text.endswith("\n") else "\n"
    path.write_text(
        f"{text}{separator}# shipyard's own state (records, reports, rendered Dockerfiles)\n{IGNORE_LINE}\n"
    )
    return Written(".gitignore", created=True)
