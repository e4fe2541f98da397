"""Helpers several verbs share: a registry client (reachable, or not yet asked), the release record that
RELEASE names, and the signing and trusted keys."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ..config.catalog import CATALOG_FILE, load_catalog
from ..config.keys import Keys, is_local, resolve_keys
from ..errors import ConfigError
from ..oci.client import RegistryClient
from ..oci.credentials import credentials_for
from ..oci.reference import RegistryNamespace
from ..preflight import check_registry
from ..record import ReleaseRecord, find_record, load_record
from .console import Console


def registry_client(target: RegistryNamespace) -> RegistryClient:
    """A client of ``target`` with its credentials, not asked anything yet."""
    return RegistryClient(target, credentials_for(target))


def reachable_registry(target: RegistryNamespace, console: Console) -> RegistryClient:
    """A client whose registry answered /v2/ with these credentials: a refusal is one clear error up front."""
    registry = registry_client(target)
    try:
        check_registry(registry, console.event)
    except BaseException:
        registry.close()
        raise
    return registry


class NamesRelease(Protocol):
    """The arguments of a verb that takes a RELEASE."""

    @property
    def project(self) -> Path: ...

    @property
    def release(self) -> str | None: ...


def release_record(args: NamesRelease) -> tuple[Path, Path, ReleaseRecord]:
    """The project root, and the path and contents of the release record that RELEASE names (default: the
    newest)."""
    root = args.project.resolve()
    path = find_record(root, args.release)
    return root, path, load_record(path)


def signing_keys(
    root: Path,
    target: RegistryNamespace,
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
