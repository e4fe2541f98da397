"""A deploy target's engine: the Docker SDK client, the environment for the docker CLI, the probe address.

``engine`` in ``[targets.<name>]`` is ``unix:///…``, ``tcp://host:port``, ``ssh://user@host`` or
``context:NAME`` (a docker context of the deploying machine). Services a target publishes are probed
at the engine's host name (127.0.0.1 for a local socket). Checks here run before anything changes:
an unreachable engine, a missing secret or a GPU profile on an engine without the NVIDIA runtime is one
line naming the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ...config.targets import Target
from ...errors import ConfigError, EngineError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class TargetEngine:
    target: str
    url: str  # the engine's API
    context: str  # the docker context it came from ("" for a URL)
    probe_host: str  # where its published ports answer, from this machine

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
    import docker

    try:
        client = docker.DockerClient(base_url=engine.url, use_ssh_client=engine.url.startswith("ssh://"), timeout=30)
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise EngineError(
            f"target {engine.target}: engine {engine.url} not reachable ({detail}); nothing was changed. "
            f"Check targets.{engine.target}.engine and that dockerd runs there"
        ) from None


def check_secrets(target: Target, environ: Mapping[str, str]) -> None:
    missing = [name for name in target.secrets if not environ.get(name)]
    if missing:
        raise ConfigError(
            f"target {target.name}: secret {', '.join(missing)} not set in this environment "
            f"(shipyard.toml: targets.{target.name}.secrets); export it and deploy again; nothing was changed"
        )
