"""Registry credentials: where they come from, and a type that never prints them."""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .reference import RegistryNamespace


class Secret:
    """A string that shows as ``[secure]`` in reprs, logs and exceptions."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('[secure]')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: Secret


def _docker_config_auth(host: str) -> Credentials | None:
    config_dir = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    try:
        auths = json.loads((config_dir / "config.json").read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    entry = auths.get(host) or auths.get(f"https://{host}")
    if not isinstance(entry, dict) or not entry.get("auth"):
        return None
    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    return Credentials(user, Secret(password))


def credentials_for(target: RegistryNamespace) -> Credentials | None:
    """From ``SHIPYARD_REGISTRY_USERNAME``/``_PASSWORD``, ``GITHUB_TOKEN`` for GHCR, or docker login."""
    user = os.environ.get("SHIPYARD_REGISTRY_USERNAME")
    password = os.environ.get("SHIPYARD_REGISTRY_PASSWORD")
    if user and password:
        return Credentials(user, Secret(password))
    if target.is_ghcr and os.environ.get("GITHUB_TOKEN"):
        return Credentials(os.environ.get("GITHUB_ACTOR", "shipyard"), Secret(os.environ["GITHUB_TOKEN"]))
    found = _docker_config_auth(target.host)
    if found is None and target.is_ghcr:
        raise ConfigError(
            "GITHUB_TOKEN is not set and `docker login ghcr.io` was not done: GHCR needs a token "
            "with write:packages (export GITHUB_TOKEN=… or echo $TOKEN | docker login ghcr.io -u USER "
            "--password-stdin)"
        )
    return found


def reading_credentials_for(host: str) -> Credentials | None:
    """For reading from a registry other than the one shipyard pushes to (a model's ``from``): that host's
    ``docker login``, or ``GITHUB_TOKEN`` for GHCR. Never the ``SHIPYARD_REGISTRY_*`` pair: it is the
    push registry's and is not sent to another host."""
    if host == "ghcr.io" and os.environ.get("GITHUB_TOKEN"):
        return Credentials(os.environ.get("GITHUB_ACTOR", "shipyard"), Secret(os.environ["GITHUB_TOKEN"]))
    return _docker_config_auth(host)
