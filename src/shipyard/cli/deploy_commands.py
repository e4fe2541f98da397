"""Deploy-side commands: ``compose-file`` (a target's Compose project, by digest)."""

from __future__ import annotations

import argparse
import json

import yaml

from ..config.project import load_project
from ..errors import ConfigError
from ..preflight import check_registry
from ..record import find_record, load_record
from ..release.channels.compose import compose_project, from_channel, from_release, target_named
from ..state import make_dirs
from .console import Console
from .shared import _registry, _target


def cmd_compose_file(args: argparse.Namespace, console: Console) -> int:
    if bool(args.channel) == bool(args.release):
        raise ConfigError("compose-file: name what to deploy: --channel NAME or a RELEASE tag (one of them)")
    project = load_project(args.project)
    target = target_named(project.catalog, args.target)
    profile = project.profiles[target.profile]
    if args.channel:
        where = _target(args)
        with _registry(where) as registry:
            check_registry(registry, lambda event: None)  # stdout may be the project itself: no progress there
            placed = from_channel(registry, where, project.catalog, target, profile, args.channel)
        source = f"channel {args.channel}"
    else:
        record = load_record(find_record(project.root, args.release, flag="RELEASE"))
        placed = from_release(record, project.catalog, target)
        source = record.release
    document = compose_project(target, profile, placed, source)
    text = f"# shipyard compose-file --target {target.name}: {source}, every image by digest\n"
    text += yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    if args.output:
        make_dirs(args.output.resolve().parent)
        args.output.write_text(text, encoding="utf-8")
        console.line(f"wrote {args.output}: {len(placed)} service(s) of {target.name} from {source}")
    elif args.json:
        console.data(json.dumps(document, indent=2))
    else:
        console.data(text.rstrip("\n"))
    return 0
