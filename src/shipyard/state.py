"""A project's ``.shipyard/`` folder: shipyard's own state, which never counts as a change to the tree.

Rendered Dockerfiles, release records and reports live there. The first time shipyard makes the
folder it writes a ``.gitignore`` of ``*`` into it, so a repository without one of its own stays
clean; the release tag's dirty check leaves the folder out as well (build/revision.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

STATE_DIR = ".shipyard"
IGNORE_ALL = "# shipyard's own state (records, reports, rendered Dockerfiles): never committed\n*\n"


def project_state_dir(project: Path) -> Path:
    return project / STATE_DIR


def make_dirs(directory: Path) -> Path:
    """``mkdir -p directory``; when that makes a project's ``.shipyard/``, it gets its ``.gitignore``."""
    for folder in (directory, *directory.parents):
        if folder.name == STATE_DIR:
            folder.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                folder.mkdir()
                (folder / ".gitignore").write_text(IGNORE_ALL, encoding="utf-8")
            break
    directory.mkdir(parents=True, exist_ok=True)
    return directory
