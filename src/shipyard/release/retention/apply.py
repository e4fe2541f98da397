"""Carrying out a prune plan: deletes by digest, leaves first, through distribution's API or GHCR's package
API, a removed release's tag on a kept digest taken away with a tombstone; a killed run is finished by
running it again."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ...config.keys import machine_state_dir
from ...errors import RegistryError
from ...events import Emit, Event
from ...oci.artifacts import MANIFEST_TYPE, OneFile, artifact_manifest
from ...oci.client import RegistryClient
from ...oci.ghcr import GhcrPackages, package_of
from .inventory import TOMBSTONE_TYPE, list_namespace
from .plan import Plan

DEFAULT_LOCAL = ("localhost:5000", "127.0.0.1:5000")  # the registry `shipyard up` starts
TOMBSTONE = b"removed by shipyard prune\n"


class Backend(Protocol):
    def repositories(self, namespace: str) -> list[str]: ...

    def delete(self, repository: str, digest: str) -> bool: ...

    def reclaim_hint(self) -> str: ...


@dataclass
class Distribution:
    """A registry with the distribution API's DELETE (distribution, Harbor, Zot …)."""

    registry: RegistryClient

    def repositories(self, namespace: str) -> list[str]:
        return list_namespace(self.registry.catalog(), namespace)

    def delete(self, repository: str, digest: str) -> bool:
        return self.registry.delete_manifest(repository, digest)

    def reclaim_hint(self) -> str:
        config = machine_state_dir() / "registry.yml"
        if self.registry.target.host in DEFAULT_LOCAL and config.is_file():
            return (
                f'blobs stay on disk until garbage collection: run "docker-registry garbage-collect {config}" '
                f"with the registry stopped (shipyard down) or read-only"
            )
        return (
            "blobs stay on disk until garbage collection: on the registry's host, run "
            '"registry garbage-collect <its config.yml>" (docker-registry on Debian) with it stopped or read-only'
        )


@dataclass
class Ghcr:
    """ghcr.io: the OCI API to read, the package API (:mod:`shipyard.oci.ghcr`) to list and delete."""

    registry: RegistryClient
    packages: GhcrPackages

    def repositories(self, namespace: str) -> list[str]:
        owner = self.packages.owner
        return list_namespace([f"{owner}/{name}" for name in self.packages.packages()], namespace)

    def delete(self, repository: str, digest: str) -> bool:
        return self.packages.delete(package_of(repository)[1], digest)

    def reclaim_hint(self) -> str:
        return "GHCR frees the storage of deleted package versions itself; nothing more to run"


def backend_for(registry: RegistryClient, packages: Callable[[str], GhcrPackages]) -> Backend:
    """GHCR's package API on ghcr.io (``packages(owner)`` makes its client), the distribution API elsewhere."""
    if registry.target.is_ghcr:
        return Ghcr(registry, packages(registry.target.namespace.split("/", 1)[0]))
    return Distribution(registry)


def apply_plan(plan: Plan, registry: RegistryClient, backend: Backend, emit: Emit) -> int:
    """Delete what the plan says, in its order, then take away the removed releases' remaining tags;
    the number of manifests deleted (one already gone counts as done, not deleted)."""
    deleted = 0
    for index, node in enumerate(plan.deletions, 1):
        _hook(index)
        if backend.delete(node.repository, node.digest):
            deleted += 1
        emit(Event("prune.deleted", f"deleted {node.repository}@{node.digest[:19]}", data={"digest": node.digest}))
    by_repo: dict[str, list[str]] = {}
    for repo, tag in plan.untag:
        by_repo.setdefault(repo, []).append(tag)
    for repo, tags in sorted(by_repo.items()):
        raw = artifact_manifest(registry, repo, TOMBSTONE, OneFile(TOMBSTONE_TYPE, "pruned", TOMBSTONE_TYPE))
        tombstone = ""
        for tag in tags:
            tombstone = registry.put_manifest(repo, tag, raw, MANIFEST_TYPE)
        if not backend.delete(repo, tombstone) and registry.head_digest(repo, tags[0]) == tombstone:
            raise RegistryError(f"registry {registry.target.host}: {repo}: could not delete the tombstone {tombstone}")
        emit(Event("prune.untagged", f"{repo}: untagged {', '.join(tags)}"))
    return deleted


def _hook(index: int) -> None:
    """``SHIPYARD_PRUNE_STOP_AFTER=N``: stop dead (SIGKILL) before the N+1th delete; the interrupt test's seam."""
    stop = os.environ.get("SHIPYARD_PRUNE_STOP_AFTER")
    if stop and index > int(stop):
        os.kill(os.getpid(), signal.SIGKILL)
