"""Which output a run gets, a pure function of (environment, is stdout a TTY, flags): ``json`` (--json),
``github`` (``GITHUB_ACTIONS=true``), ``plain`` (CI, no TTY, or ``TERM=dumb``) or ``tty`` (a person at a
terminal). The GitHub job summary is written under GitHub Actions in every mode, --json too."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..console import Console


class Mode(enum.Enum):
    TTY = "tty"
    PLAIN = "plain"
    GITHUB = "github"
    JSON = "json"


@dataclass(frozen=True)
class OutputSettings:
    mode: Mode
    verbosity: int  # Console.SILENT .. 2
    utc: bool = False  # absolute UTC timestamps on event lines
    step_summary: Path | None = None
    workspace: Path | None = None  # GITHUB_WORKSPACE: annotation paths are relative to it


def _on(value: str | None) -> bool:
    """CI providers set CI=true (or 1); CI=false or empty means "not CI"."""
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def select_output(
    env: Mapping[str, str], isatty: bool, *, json: bool = False, quiet: bool = False, verbose: int = 0
) -> OutputSettings:
    github = env.get("GITHUB_ACTIONS") == "true"
    ci = _on(env.get("CI")) or github
    summary = Path(env["GITHUB_STEP_SUMMARY"]) if github and env.get("GITHUB_STEP_SUMMARY") else None
    workspace = Path(env["GITHUB_WORKSPACE"]) if github and env.get("GITHUB_WORKSPACE") else None
    level = -1 if quiet else verbose
    if json:
        # progress only when asked for with -v, and then on stderr (factory.py)
        return OutputSettings(Mode.JSON, level if verbose and not quiet else Console.SILENT, ci, summary, workspace)
    if github:
        return OutputSettings(Mode.GITHUB, level, False, summary, workspace)  # the runner stamps every line
    if ci or not isatty or env.get("TERM") == "dumb":
        return OutputSettings(Mode.PLAIN, level, ci)
    return OutputSettings(Mode.TTY, level)
