"""Checks before any work: engine, buildx, containerd image store, registry. One line each."""

from __future__ import annotations

import json

from .errors import CommandFailed, EngineError, RegistryError
from .events import Emit, Event
from .release.registry import RegistryClient
from .runner import Runner

SNAPSHOTTER = "io.containerd.snapshotter.v1"


def check_engine(runner: Runner, emit: Emit) -> None:
    try:
        info = json.loads(runner.run(["docker", "info", "--format", "{{json .}}"]).output.strip().splitlines()[-1])
    except CommandFailed:
        raise EngineError(
            "Docker engine not reachable (docker info failed): start it with `nox -s up` "
            "(or scripts/up.sh), or point DOCKER_HOST at a running engine"
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
        raise RegistryError(f"{exc}; for the local registry run `nox -s up`") from None
    emit(Event("preflight", f"registry {registry.target.host} reachable"))
