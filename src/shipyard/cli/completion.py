"""``shipyard completion SHELL``, its options, help and handler: a static completion script (shtab) made
from the parser ``shipyard`` runs, so every verb, flag and choice completes as it parses, and file and
directory arguments complete as paths."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import shtab

from .console import Console
from .options import Arguments, Option
from .parser import make_parser
from .verb import Verb


@dataclass(frozen=True, kw_only=True)
class CompletionArgs(Arguments):
    shell: str


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


def cmd_completion(args: CompletionArgs, console: Console) -> int:
    console.data(completion_script(args.shell).rstrip("\n"))
    return 0


VERBS = (
    Verb(
        "completion",
        help="print a shell completion script (bash, zsh or tcsh)",
        example="shipyard completion bash > /etc/bash_completion.d/shipyard",
        args=CompletionArgs,
        run=cmd_completion,
        options=(Option(("shell",), choices=("bash", "zsh", "tcsh"), help="the shell to complete for"),),
    ),
)
