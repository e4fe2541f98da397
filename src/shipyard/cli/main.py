"""The ``shipyard`` command, the same code the nox sessions run: argv read by the parser of the verb it
names (that verb's module alone imported), its typed arguments to its handler, and a ShipyardError as
one ``shipyard: error:`` line and its exit code."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import ShipyardError
from ..runner import stop_all
from .output.factory import make_console
from .output.mode import select_output
from .parser import make_parser, verb_named
from .verb import VERB_MODULES, Verb, load_verbs

# every verb -> the module of cli/ that declares it (options, help and handler), imported on use
COMMANDS = VERB_MODULES


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled), handled like Ctrl-C: children stopped, canary containers removed."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def read_argv(argv: Sequence[str]) -> tuple[Verb[Any], argparse.Namespace]:
    """The verb argv names and what argparse read, by the parser of that verb alone (so only its module is
    imported); where argv does not plainly name a verb (--help, a typo), by the complete parser."""
    name = verb_named(argv)
    verbs = load_verbs(None if name is None else [name])
    namespace = make_parser(verbs).parse_args(argv)
    return next(v for v in verbs if v.name == namespace.command), namespace


def main(argv: Sequence[str] | None = None) -> int:
    verb, namespace = read_argv(sys.argv[1:] if argv is None else argv)
    console = make_console(
        select_output(
            os.environ, sys.stdout.isatty(), json=namespace.json, quiet=namespace.quiet, verbose=namespace.verbose
        )
    )
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return verb.run(verb.arguments(namespace), console)
    except ShipyardError as exc:
        console.failed(exc, verb.name, namespace.project)
        first, *rest = str(exc).splitlines() or [type(exc).__name__]
        print(f"shipyard: error: {first}", file=sys.stderr)
        for line in rest:
            print(f"  {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        stopped = stop_all()
        detail = f"; stopped {stopped} running command(s)" if stopped else ""
        print(f"shipyard: interrupted{detail}; run the same command again to finish", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    sys.exit(main())
