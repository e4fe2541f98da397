"""``shipyard init [DIR]``: scaffold a project and say what was written and what was left alone."""

from __future__ import annotations

import argparse
import json
import shlex

from ..config.scaffold import scaffold
from .console import Console


def cmd_init(args: argparse.Namespace, console: Console) -> int:
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
