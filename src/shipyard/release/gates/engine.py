"""Which Docker engine the canary runs on, and how its published ports are reached from here.

The engine is ``DOCKER_HOST`` if set, else the current docker context (``docker context use``,
``DOCKER_CONTEXT``), as the docker CLI chooses. A local engine (unix socket) publishes the
canary's ports on 127.0.0.1 only. A remote one (``tcp://mainpc:2376``, ``ssh://me@mainpc``)
publishes them on all its interfaces and is probed at its own host name, so that
``DOCKER_HOST=ssh://me@mainpc shipyard canary --profile mainpc`` checks the service on the
machine it is built for. ``SHIPYARD_CANARY_HOST`` names another address to probe (a VPN or
LAN name of the engine's host).

A GPU profile's containers ask the engine for every NVIDIA GPU of its host (``--gpus all``); before
anything starts, the engine must show an ``nvidia`` runtime (the NVIDIA Container Toolkit, configured).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...errors import EngineError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Endpoint:
    url: str  # the engine's API, e.g. unix:///var/run/docker.sock or ssh://me@mainpc
    context: str  # the docker context it came from ("" when from DOCKER_HOST)
    probe_host: str  # where the canary's published ports are reached from this machine
    bind: str  # the address the ports are published on, on the engine's host

    @property
    def is_remote(self) -> bool:
        return self.bind != LOOPBACK


def _current_context() -> tuple[str, str]:
    from docker.context import ContextAPI

    try:
        context = ContextAPI.get_current_context()
    except Exception as exc:  # noqa: BLE001 - docker-py raises several kinds for a broken context store
        raise EngineError(f"docker context: cannot read the current context ({exc})") from None
    return str(context.Name), str(context.Host or "")


def endpoint(environ: Mapping[str, str] = os.environ) -> Endpoint:
    url, context = environ.get("DOCKER_HOST", ""), ""
    if not url:
        context, url = _current_context()
    url = url or "unix:///var/run/docker.sock"
    parts = urlsplit(url)
    if parts.scheme in ("unix", "npipe", ""):
        host = ""
    elif parts.scheme in ("tcp", "ssh", "http", "https"):
        host = parts.hostname or ""
    else:
        raise EngineError(f"DOCKER_HOST={url!r}: expected unix://, tcp:// or ssh://")
    remote = bool(host) and host not in ("localhost", LOOPBACK, "::1")
    probe = environ.get("SHIPYARD_CANARY_HOST") or (host if remote else LOOPBACK)
    return Endpoint(url, context, probe, "0.0.0.0" if remote else LOOPBACK)


def connect(where: Endpoint) -> Any:
    """A Docker SDK client for ``where``; ssh:// goes through the system's ssh (no paramiko)."""
    import docker

    try:
        client = docker.DockerClient(base_url=where.url, use_ssh_client=where.url.startswith("ssh://"))
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        origin = f"docker context {where.context!r}" if where.context else "DOCKER_HOST"
        raise EngineError(
            f"Docker engine {where.url} ({origin}) not reachable for the canary ({exc}); start it with "
            f"`nox -s up`, or point DOCKER_HOST at a running engine"
        ) from None


def has_gpu(hardware: Mapping[str, str]) -> bool:
    """A profile's ``hardware`` table says its machine has a GPU: ``gpu`` set, and not ``none``."""
    return hardware.get("gpu", "none").strip().lower() not in ("", "none")


def gpu_device_requests() -> list[Any]:
    """``device_requests`` for a container that gets every NVIDIA GPU of the engine's host (``--gpus all``)."""
    from docker.types import DeviceRequest

    return [DeviceRequest(driver="nvidia", count=-1, capabilities=[["gpu"]])]


def require_nvidia_runtime(client: Any, who: str, engine_url: str) -> None:
    """Refuse, as one line naming ``who`` and the fix, an engine without the NVIDIA runtime: without it a
    container asking for GPUs fails to start, or a service falls back to the CPU and passes slow."""
    import docker

    try:
        info = client.info()
    except docker.errors.DockerException as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise EngineError(f"{who}: cannot read the runtimes of the engine at {engine_url} ({detail})") from None
    runtimes = sorted(info.get("Runtimes") or {})
    if "nvidia" in runtimes:
        return
    raise EngineError(
        f"{who}: the engine at {engine_url} has no NVIDIA runtime (runtimes: {', '.join(runtimes) or 'none'}); "
        f"install the NVIDIA Container Toolkit there and run `nvidia-ctk runtime configure --runtime=docker`, "
        f"then restart dockerd"
    )
