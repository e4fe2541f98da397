"""Docker engines: which one a canary (``DOCKER_HOST``, else the docker context) or a deploy target (its
``engine``) talks to, the client, and where its published ports answer."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..config.targets import Target
from ..errors import ConfigError, EngineError

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
    """A Docker SDK client for the canary's engine, which answered a ping."""
    origin = f"docker context {where.context!r}" if where.context else "DOCKER_HOST"
    return _client(
        where.url,
        lambda detail: (
            f"Docker engine {where.url} ({origin}) not reachable for the canary ({detail}); start it "
            f"with `nox -s up`, or point DOCKER_HOST at a running engine"
        ),
    )


def _client(url: str, refused: Any, timeout: int = 60) -> Any:
    """A Docker SDK client for ``url`` that answered a ping (ssh:// through the system's ssh, no paramiko);
    else EngineError with ``refused(detail)``."""
    import docker

    try:
        client = docker.DockerClient(base_url=url, use_ssh_client=url.startswith("ssh://"), timeout=timeout)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise EngineError(refused(detail)) from None


# --- a deploy target's engine ------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetEngine:
    target: str
    url: str  # the engine's API
    context: str  # the docker context it came from ("" for a URL)
    probe_host: str  # where its published ports answer, from this machine

    @property
    def is_local(self) -> bool:
        return self.probe_host == LOOPBACK

    def cli_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """The deploying environment (secrets included, for Compose to substitute) aimed at this engine."""
        env = {k: v for k, v in environ.items() if k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
        if self.context:
            env["DOCKER_CONTEXT"] = self.context
        else:
            env["DOCKER_HOST"] = self.url
        return env


def resolve_engine(target: Target) -> TargetEngine:
    context = ""
    url = target.engine
    if url.startswith("context:"):
        context = url.removeprefix("context:")
        url = _context_host(target, context)
    host = (urlsplit(url).hostname or "") if url.startswith(("tcp://", "ssh://")) else ""
    probe = host if host and host not in ("localhost", "::1") else LOOPBACK
    return TargetEngine(target.name, url, context, probe)


def _context_host(target: Target, name: str) -> str:
    from docker.context import ContextAPI

    try:
        context = ContextAPI.get_context(name)
    except Exception as exc:  # noqa: BLE001 - docker-py raises several kinds for a broken context store
        raise EngineError(f"target {target.name}: cannot read docker context {name!r} ({exc})") from None
    if context is None:
        raise ConfigError(
            f"shipyard.toml: targets.{target.name}.engine: no docker context {name!r} on this machine "
            f"(see `docker context ls`)"
        )
    return str(context.Host or "unix:///var/run/docker.sock")


def connect_engine(engine: TargetEngine) -> Any:
    """A Docker SDK client for the target's engine, which answered a ping; else one line naming the target."""
    return _client(
        engine.url,
        lambda detail: (
            f"target {engine.target}: engine {engine.url} not reachable ({detail}); nothing was changed. "
            f"Check targets.{engine.target}.engine and that dockerd runs there"
        ),
        timeout=30,
    )


def check_secrets(target: Target, environ: Mapping[str, str]) -> None:
    missing = [name for name in target.secrets if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"target {target.name}: secret {', '.join(missing)} not set in this environment "
            f"(shipyard.toml: targets.{target.name}.secrets); export it and deploy again; nothing was changed"
        )


# --- GPUs ----------------------------------------------------------------------------------------------


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


def create_container(client: Any, image: str, **options: Any) -> Any:
    """A container of ``image`` created on the engine of ``client``, the image pulled first where the engine
    lacks it (the SDK's create does not pull); with ``platform``, that platform's image of an index."""
    import docker

    try:
        return client.containers.create(image, **options)
    except docker.errors.NotFound as exc:
        # an index the engine has, without the asked platform's image, is a NotFound that names no image
        if not isinstance(exc, docker.errors.ImageNotFound) and not options.get("platform"):
            raise
        platform = {"platform": options["platform"]} if options.get("platform") else {}
        client.images.pull(image, **platform)
        return client.containers.create(image, **options)
