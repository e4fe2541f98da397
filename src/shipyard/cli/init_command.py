"""``shipyard init [DIR]``, its options, help and handler: scaffold a project and say what was written and
what was left alone."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..config.scaffold import scaffold
from .console import Console
from .options import Arguments, Option
from .verb import Verb


@dataclass(frozen=True, kw_only=True)
class InitArgs(Arguments):
    directory: Path | None


def cmd_init(args: InitArgs, console: Console) -> int:
    root = (args.directory or args.project).resolve()
    written = scaffold(root)
    for item in written:
        console.line(f"{'created' if item.created else 'skipped'} {item.path}" + ("" if item.created else " (exists)"))
    created = sum(w.created for w in written)
    in_git = any((folder / ".git").exists() for folder in (root, *root.parents))
    commit = (
        f"cd {shlex.quote(str(root))} && {'' if in_git else 'git init && '}git add -A && git commit -m 'shipyard init'"
    )
    console.line(
        f"\n{root}: {created} file(s) written, {len(written) - created} left as they were. "
        f"Next, commit and release:\n  {commit}\n"
        "  shipyard build --profile cpu && shipyard verify && shipyard canary --profile cpu"
    )
    if args.json:
        console.data(json.dumps({"project": str(root), "files": [w.__dict__ for w in written]}, indent=2))
    return 0


VERBS = (
    Verb(
        "init",
        help="write a working project (catalog, cpu profile, templates, one service) without overwriting a file",
        example="shipyard init my-images && cd my-images && git init && git add -A && git commit -m init",
        args=InitArgs,
        run=cmd_init,
        options=(
            Option(
                ("directory",),
                nargs="?",
                type=Path,
                metavar="DIR",
                help="where (default: --project, else the current directory)",
            ),
        ),
    ),
)
