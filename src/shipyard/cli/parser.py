"""The argparse parser, made from the verbs' declarations with no code of its own per verb: complete
(``make_parser()``, which the command reference and the completion script read), or of the one verb
argv names (``verb_named``), which is what ``shipyard`` runs with."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__
from .options import GLOBAL_OPTIONS
from .verb import VERB_MODULES, Verb, load_verbs


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``shipyard: error:`` line like every other error (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"shipyard: error: {message} (see `{self.prog} --help`)\n")


def make_parser(verbs: Sequence[Verb[Any]] | None = None) -> Parser:
    """The ``shipyard`` parser with ``verbs`` (default: every verb of the table)."""
    parser = Parser(
        prog="shipyard",
        description="Build, push and release the container images of ML inference services.",
        epilog="example: shipyard build --profile cpu --image model-ops-coordinator -v",
    )
    parser.add_argument("--version", action="version", version=f"shipyard {__version__}")
    for option in GLOBAL_OPTIONS:
        option.add_to(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for verb in load_verbs() if verbs is None else verbs:
        verb.add_to(commands)
    return parser


class _NotPlain(Exception):
    """The global options alone cannot say which verb argv names."""


class _Prescan(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotPlain(message)


def verb_named(argv: Sequence[str]) -> str | None:
    """The verb ``argv`` runs, read with the global options alone (the same declarations, so the same
    abbreviations and ``--project=DIR``); None where that is not plain (no verb, an unknown one, --help or
    --version before it): then only the complete parser can say what argv means."""
    prescan = _Prescan(add_help=False)
    for option in GLOBAL_OPTIONS:
        option.add_to(prescan)
    prescan.add_argument("command", nargs="?")
    prescan.add_argument("rest", nargs=argparse.REMAINDER)
    try:
        found, unknown = prescan.parse_known_args(list(argv))
    except _NotPlain:
        return None
    command: str | None = found.command
    return command if not unknown and command in VERB_MODULES else None
