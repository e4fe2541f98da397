"""Checks before any work: engine, buildx, containerd image store, registry. One line each."""

from __future__ import annotations

import json
import os

from .errors import CommandFailed, EngineError, RegistryError
from .events import Emit, Event
from .oci.client import RegistryClient
from .oci.reference import RegistryNamespace
from .runner import Runner

SNAPSHOTTER = "io.containerd.snapshotter.v1"


def check_engine(runner: Runner, emit: Emit) -> None:
    try:
        info = json.loads(runner.run(["docker", "info", "--format", "{{json .}}"]).output.strip().splitlines()[-1])
    except CommandFailed:
        host = os.environ.get("DOCKER_HOST")
        raise EngineError(
            f"Docker engine not reachable (docker info failed{f'; DOCKER_HOST={host}' if host else ''}): "
            "start it with `nox -s up` (or scripts/up.sh), or point DOCKER_HOST at a running engine"
        ) from None
    if info.get("ServerErrors"):
        raise EngineError(f"Docker engine not reachable: {info['ServerErrors'][0]}; start it with `nox -s up`")
    driver_status = dict(tuple(pair) for pair in info.get("DriverStatus") or [])
    if driver_status.get("driver-type") != SNAPSHOTTER:
        raise EngineError(
            "the engine uses the classic image store; the registry build cache needs the containerd "
            'image store: set {"features":{"containerd-snapshotter":true}} in '
            "/etc/docker/daemon.json and restart dockerd"
        )
    try:
        version = runner.run(["docker", "buildx", "version"]).output.strip()
    except CommandFailed:
        raise EngineError("docker buildx is missing: install the buildx plugin (Debian: docker-buildx)") from None
    emit(Event("preflight", f"engine {info.get('ServerVersion', '?')} (containerd image store), {version}"))


def check_registry(registry: RegistryClient, emit: Emit) -> None:
    try:
        registry.ping()
    except RegistryError as exc:
        raise RegistryError(f"{exc}; {registry_hint(registry.target, str(exc))}") from None
    emit(Event("preflight", f"registry {registry.target.host} reachable"))


def registry_hint(target: RegistryNamespace, message: str) -> str:
    """What to do about a failed registry check: credentials when they were refused, else reachability."""
    if "refused the credentials" in message:  # the registry client's words for a 401 (ping or token service)
        token = "GITHUB_TOKEN (a token with write:packages), " if target.is_ghcr else ""
        return (
            f"expected credentials it accepts: {token}SHIPYARD_REGISTRY_USERNAME and SHIPYARD_REGISTRY_PASSWORD, "
            f"or `docker login {target.host}`"
        )
    if target.is_local:
        return "for the local registry run `nox -s up`"
    return "check --registry (or SHIPYARD_REGISTRY) and the network"
