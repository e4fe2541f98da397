"""``shipyard completion SHELL``: a static completion script generated from the argparse parser (shtab).

The script is made from the same parser ``shipyard`` runs, so every subcommand, flag and choice
completes as it parses; file and directory arguments complete as paths.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import shtab

from .console import Console
from .parser import make_parser


def _mark_paths(parser: argparse.ArgumentParser) -> None:
    """Give path arguments shtab's file/directory completion, in this parser and every subparser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _mark_paths(sub)
        elif action.type is Path:
            action.complete = shtab.DIRECTORY if action.metavar == "DIR" else shtab.FILE  # type: ignore[attr-defined]


def completion_script(shell: str) -> str:
    parser = make_parser()
    _mark_paths(parser)
    return shtab.complete(parser, shell=shell)


def cmd_completion(args: argparse.Namespace, console: Console) -> int:
    console.data(completion_script(args.shell).rstrip("\n"))
    return 0
