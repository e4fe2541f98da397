"""Helpers the CLI's commands share: the registry client, the release record, the bootstrap scripts."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from ..config.catalog import CATALOG_FILE, load_catalog
from ..config.keys import Keys, is_local, resolve_keys
from ..config.registry import parse_target
from ..errors import ConfigError
from ..oci.client import RegistryClient
from ..oci.credentials import credentials_for
from ..oci.reference import RegistryTarget
from ..preflight import check_registry
from ..record import ReleaseRecord, find_record, load_record
from ..runner import Runner
from .console import Console


def run_script(name: str, json_console: Console | None = None) -> int:
    """scripts/up.sh or down.sh, shipped inside the package, through the one runner, output streamed
    (to stderr under --json, whose stdout is ``{"script": …, "returncode": …}``)."""
    script = resources.files("shipyard") / "resources" / name
    with resources.as_file(script) as path:
        echo = print if json_console is None else (lambda line: print(line, file=sys.stderr, flush=True))
        code = Runner().run(["bash", str(path)], on_line=echo, check=False).returncode
    if json_console is not None:
        json_console.data(json.dumps({"script": name, "returncode": code}))
    return code


def _target(args: argparse.Namespace) -> RegistryTarget:
    return parse_target(getattr(args, "registry", None))


def _registry(target: RegistryTarget) -> RegistryClient:
    return RegistryClient(target, credentials_for(target))


def _reachable_registry(target: RegistryTarget, console: Console) -> RegistryClient:
    """A client whose registry answered /v2/ with these credentials: a refusal is one clear error up front."""
    registry = _registry(target)
    try:
        check_registry(registry, console.event)
    except BaseException:
        registry.close()
        raise
    return registry


def _release(args: argparse.Namespace) -> tuple[Path, Path, ReleaseRecord]:
    """The project root, and the path and contents of the release record that --release names."""
    root = args.project.resolve()
    path = find_record(root, args.release, flag="RELEASE" if args.command == "promote" else "--release")
    return root, path, load_record(path)


def _keys(
    root: Path,
    target: RegistryTarget,
    console: Console,
    *,
    need_signer: bool = True,
    project_optional: bool = False,
) -> Keys:
    """The signing key and the trusted keys for work on ``target``: shipyard.toml's [project] trusted_keys
    and the environment. ``project_optional`` (the channel verbs): without a shipyard.toml, none, which
    the local registry's development key pair answers."""
    from .key_commands import key_password

    if (root / CATALOG_FILE).is_file() or not project_optional:
        trusted_keys: tuple[Path, ...] = load_catalog(root).trusted_keys
    elif is_local(target):
        trusted_keys = ()
    else:
        raise ConfigError(
            f"--project {root}: no {CATALOG_FILE} there; a channel's ledger is signed with the keys its [project] "
            f"trusted_keys names: point --project at the repository"
        )
    keys = resolve_keys(trusted_keys, target, password=key_password, need_signer=need_signer)
    if keys.development and keys.signer is not None and need_signer:
        console.info(f"signing with this machine's development key (trusted for {target.host} only)")
    return keys
