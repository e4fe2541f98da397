"""GitHub Actions: the plain lines plus workflow commands. Each unit's buildx output is one collapsed
``::group::`` printed when the unit is done, between ``::stop-commands::`` markers (a Dockerfile cannot issue
workflow commands); the error a command ends with is an ``::error`` annotation, with its file and line."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from ...errors import ConfigError
from ...events import Event
from ..console import Console

MAX_GROUP_LINES = 5000  # per unit; the first ones go (the end of a build log is the part that explains it)


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def error_command(message: str, *, file: str | None = None, line: int | None = None, title: str = "") -> str:
    props = [f"file={escape_property(file)}"] if file else []
    props += [f"line={line}"] if file and line else []
    props += [f"title={escape_property(title)}"] if title else []
    return f"::error{' ' + ','.join(props) if props else ''}::{escape_data(message)}"


def group_lines(title: str, lines: list[str], token: str) -> list[str]:
    return [f"::group::{escape_data(title)}", f"::stop-commands::{token}", *lines, f"::{token}::", "::endgroup::"]


def annotation_path(file: str, project: Path, workspace: Path | None) -> str:
    """Annotations name files relative to the repository checkout (GITHUB_WORKSPACE)."""
    path = Path(file) if Path(file).is_absolute() else project / file
    path = path.resolve()
    if workspace is not None and path.is_relative_to(workspace.resolve()):
        return path.relative_to(workspace.resolve()).as_posix()
    return path.as_posix()


class GitHubConsole(Console):
    def __init__(self, verbosity: int, *, workspace: Path | None = None, **kwargs: Any) -> None:
        super().__init__(verbosity, **kwargs)
        self.workspace = workspace
        self._token = uuid.uuid4().hex
        self._buffers: defaultdict[str, deque[str]] = defaultdict(lambda: deque(maxlen=MAX_GROUP_LINES))
        self._dropped: defaultdict[str, int] = defaultdict(int)
        self._buffer_lock = threading.Lock()

    def event(self, event: Event) -> None:
        if event.kind == "build.output":
            with self._buffer_lock:
                buffer = self._buffers[event.unit]
                self._dropped[event.unit] += len(buffer) == buffer.maxlen
                buffer.append(event.message)
            return
        if event.kind in ("unit.built", "unit.failed"):
            lines = self._take(event.unit)
            if lines and self.shows(event):
                self.write("\n".join(group_lines(self.format(event), lines, self._token)))
                return
        super().event(event)

    def _take(self, unit: str) -> list[str]:
        with self._buffer_lock:
            lines = list(self._buffers.pop(unit, ()))
            dropped = self._dropped.pop(unit, 0)
        return ([f"… {dropped} earlier lines left out"] if dropped else []) + lines

    def failed(self, error: BaseException, command: str, project: Path) -> None:
        file = line = None
        if isinstance(error, ConfigError) and error.file:
            file, line = annotation_path(error.file, project, self.workspace), error.line
        self.write(error_command(str(error), file=file, line=line, title=f"shipyard {command}"))
        super().failed(error, command, project)
