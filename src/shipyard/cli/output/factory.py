"""The console for a mode (output/mode.py). rich is imported only for a terminal."""

from __future__ import annotations

import sys

from ..console import Console
from .github import GitHubConsole
from .mode import Mode, OutputSettings


def make_console(settings: OutputSettings) -> Console:
    if settings.mode is Mode.TTY:
        from .live import TtyConsole

        return TtyConsole(settings.verbosity, utc=settings.utc, step_summary=settings.step_summary)
    if settings.mode is Mode.GITHUB:
        return GitHubConsole(
            settings.verbosity, workspace=settings.workspace, utc=settings.utc, step_summary=settings.step_summary
        )
    # --json: stdout is the document alone; what -v asks for goes to stderr
    stream = sys.stderr if settings.mode is Mode.JSON else None
    return Console(settings.verbosity, stream=stream, utc=settings.utc, step_summary=settings.step_summary)
