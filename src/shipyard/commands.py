"""Helpers the CLI's commands share: the registry client, the release record, the bootstrap scripts."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

from .console import Console
from .credentials import credentials_for
from .preflight import check_registry
from .release.record import ReleaseRecord, find_record, load_record
from .release.registry import RegistryClient
from .runner import Runner
from .target import RegistryTarget, parse_target


def run_script(name: str) -> int:
    """scripts/up.sh or down.sh, shipped inside the package, through the one runner, output streamed."""
    script = resources.files("shipyard") / "resources" / name
    with resources.as_file(script) as path:
        return Runner().run(["bash", str(path)], on_line=print, check=False).returncode


def _target(args: argparse.Namespace) -> RegistryTarget:
    return parse_target(getattr(args, "registry", None))


def _registry(target: RegistryTarget) -> RegistryClient:
    return RegistryClient(target, credentials_for(target))


def _reachable_registry(target: RegistryTarget, console: Console) -> RegistryClient:
    """A client whose registry answered /v2/ with these credentials: a refusal is one clear error up front."""
    registry = _registry(target)
    check_registry(registry, console.event)
    return registry


def _release(args: argparse.Namespace) -> tuple[Path, Path, ReleaseRecord]:
    """The project root, and the path and contents of the release record that --release names."""
    root = args.project.resolve()
    path = find_record(root, args.release, flag="RELEASE" if args.command == "promote" else "--release")
    return root, path, load_record(path)
