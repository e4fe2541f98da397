"""``shipyard up`` and ``down``: the Docker engine and the local registry on this host, by the bootstrap
scripts shipped in the package."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import resources

from ..runner import Runner
from .console import Console
from .options import Arguments
from .verb import Verb


@dataclass(frozen=True, kw_only=True)
class HostArgs(Arguments):
    """up and down take the global options only."""


def run_script(name: str, json_console: Console | None = None) -> int:
    """resources/up.sh or down.sh through the one runner, output streamed (to stderr under --json, whose
    stdout is ``{"script": …, "returncode": …}``)."""
    script = resources.files("shipyard") / "resources" / name
    with resources.as_file(script) as path:
        echo = print if json_console is None else (lambda line: print(line, file=sys.stderr, flush=True))
        code = Runner().run(["bash", str(path)], on_line=echo, check=False).returncode
    if json_console is not None:
        json_console.data(json.dumps({"script": name, "returncode": code}))
    return code


def cmd_up(args: HostArgs, console: Console) -> int:
    return run_script("up.sh", console if args.json else None)


def cmd_down(args: HostArgs, console: Console) -> int:
    return run_script("down.sh", console if args.json else None)


VERBS = (
    Verb(
        "up",
        help="install and start the Docker engine and the local registry (idempotent)",
        example="shipyard up   (Debian as root installs what is missing; elsewhere it names it)",
        args=HostArgs,
        run=cmd_up,
    ),
    Verb(
        "down",
        help="stop the local registry and the engine started by `up`",
        example="shipyard down",
        args=HostArgs,
        run=cmd_down,
    ),
)
