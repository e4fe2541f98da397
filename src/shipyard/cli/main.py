"""The ``shipyard`` command: the same code the nox sessions run, without nox."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from ..errors import ShipyardError
from ..runner import stop_all
from .console import Console
from .output.factory import make_console
from .output.mode import select_output
from .parser import make_parser
from .shared import run_script


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled), handled like Ctrl-C: children stopped, canary containers removed."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


# command -> (module, function); imported on use, so `shipyard promote` does not load the build side
COMMANDS = {
    "plan": ("build_commands", "cmd_plan"),
    "render": ("build_commands", "cmd_render"),
    "build": ("build_commands", "cmd_build"),
    "base": ("build_commands", "cmd_base"),
    "bake-file": ("build_commands", "cmd_bake_file"),
    "verify": ("release_commands", "cmd_verify"),
    "scan": ("release_commands", "cmd_scan"),
    "trivy-db": ("release_commands", "cmd_trivy_db"),
    "canary": ("release_commands", "cmd_canary"),
    "promote": ("channel_commands", "cmd_promote"),
    "rollback": ("channel_commands", "cmd_rollback"),
    "history": ("channel_commands", "cmd_history"),
    "report": ("report_commands", "cmd_report"),
    "model-signature": ("model_commands", "cmd_model_signature"),
    "init": ("init_command", "cmd_init"),
    "keygen": ("key_commands", "cmd_keygen"),
    "compose-file": ("deploy_commands", "cmd_compose_file"),
    "deploy": ("deploy_commands", "cmd_deploy"),
    "rollout": ("deploy_commands", "cmd_rollout"),
    "deployments": ("deploy_commands", "cmd_deployments"),
    "status": ("status_command", "cmd_status"),
    "prune": ("prune_commands", "cmd_prune"),
    "completion": ("completion", "cmd_completion"),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    console = make_console(
        select_output(os.environ, sys.stdout.isatty(), json=args.json, quiet=args.quiet, verbose=args.verbose)
    )
    if args.command in ("up", "down"):
        return run_script(f"{args.command}.sh", console if args.json else None)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        module, function = COMMANDS[args.command]
        command: Callable[[argparse.Namespace, Console], int] = getattr(
            importlib.import_module(f".{module}", __package__), function
        )
        return command(args, console)
    except ShipyardError as exc:
        console.failed(exc, args.command, args.project)
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
