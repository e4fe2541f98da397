"""Output mode selection: a pure function of (environment, TTY, flags), every combination."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard.cli.console import Console
from shipyard.cli.output.factory import make_console
from shipyard.cli.output.github import GitHubConsole
from shipyard.cli.output.live import TtyConsole
from shipyard.cli.output.mode import Mode, select_output
from shipyard.events import Event

GITHUB = {"GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_STEP_SUMMARY": "/s.md", "GITHUB_WORKSPACE": "/w"}
ENVS = {
    "none": {},
    "ci": {"CI": "true"},
    "ci=1": {"CI": "1"},
    "ci=false": {"CI": "false"},
    "dumb": {"TERM": "dumb"},
    "github": GITHUB,
    "github-no-ci": {"GITHUB_ACTIONS": "true"},
}


def expected(env: str, isatty: bool, json: bool) -> Mode:
    if json:
        return Mode.JSON
    if env.startswith("github"):
        return Mode.GITHUB
    if env in ("ci", "ci=1", "dumb") or not isatty:
        return Mode.PLAIN
    return Mode.TTY


@pytest.mark.parametrize(("env", "isatty", "json"), list(itertools.product(ENVS, (True, False), (True, False))))
def test_every_combination(env: str, isatty: bool, json: bool) -> None:
    settings = select_output(ENVS[env], isatty, json=json)
    assert settings.mode is expected(env, isatty, json)
    in_ci = env in ("ci", "ci=1") or env.startswith("github")
    # absolute UTC stamps: CI logs without their own (GitHub's runner stamps lines itself)
    assert settings.utc == (in_ci and settings.mode in (Mode.PLAIN, Mode.JSON))
    # the job summary is a file: written under GitHub Actions whatever the mode, --json too
    assert settings.step_summary == (Path("/s.md") if env == "github" else None)


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ({}, 0),
        ({"quiet": True}, -1),
        ({"verbose": 1}, 1),
        ({"verbose": 2}, 2),
        ({"quiet": True, "verbose": 2}, -1),  # -q wins
        ({"json": True}, Console.SILENT),
        ({"json": True, "verbose": 1}, 1),  # progress, on stderr
        ({"json": True, "verbose": 1, "quiet": True}, Console.SILENT),
    ],
)
def test_verbosity(flags: dict[str, object], level: int) -> None:
    assert select_output({}, True, **flags).verbosity == level  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "isatty", "json", "kind"),
    [
        ({}, True, False, TtyConsole),
        ({}, False, False, Console),
        (GITHUB, False, False, GitHubConsole),
        (GITHUB, True, True, Console),
    ],
)
def test_the_console_for_each_mode(env: dict[str, str], isatty: bool, json: bool, kind: type[Console]) -> None:
    console = make_console(select_output(env, isatty, json=json))
    assert type(console) is kind


def test_json_mode_sends_progress_to_stderr_and_data_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    console = make_console(select_output({}, False, json=True, verbose=1))
    console.info("verifying 3 units")
    console.data('{"ok": true}')
    out, err = capsys.readouterr()
    assert (out, err) == ('{"ok": true}\n', "verifying 3 units\n")


def test_plain_lines_carry_utc_time_in_ci() -> None:
    stream = io.StringIO()
    ticks = iter([10.0, 22.5])
    console = Console(
        0, stream=stream, utc=True, clock=lambda: next(ticks), wall=lambda: datetime(2026, 11, 23, 4, 40, 1, tzinfo=UTC)
    )
    console.event(Event("unit.built", "[1/4] cpu/base-python: built in 12.5s"))
    assert stream.getvalue() == "2026-11-23T04:40:01Z [  12.5s] [1/4] cpu/base-python: built in 12.5s\n"
