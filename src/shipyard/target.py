"""Where images go: ``<registry host>/<namespace>/<profile>/<image>:<tag>``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import ConfigError

DEFAULT_REGISTRY = "localhost:5000/shipyard"
HOST_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::\d{1,5})?$")
PATH_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


@dataclass(frozen=True)
class RegistryTarget:
    host: str
    namespace: str

    @property
    def is_local(self) -> bool:
        host = self.host.split(":")[0]
        return host in ("localhost", "127.0.0.1")

    @property
    def is_ghcr(self) -> bool:
        return self.host == "ghcr.io"

    @property
    def api_base(self) -> str:
        return f"{'http' if self.is_local else 'https'}://{self.host}"

    def repository(self, *parts: str) -> str:
        """Repository path inside the registry, e.g. ``shipyard/cpu/family-web``."""
        return "/".join((self.namespace, *parts))

    def ref(self, *parts: str) -> str:
        return f"{self.host}/{self.repository(*parts)}"

    def __str__(self) -> str:
        return f"{self.host}/{self.namespace}"


def parse_target(value: str | None, *, flag: str = "--registry") -> RegistryTarget:
    """``--registry`` (or ``SHIPYARD_REGISTRY``): ``host[:port]/namespace``; default local.

    ``flag`` names where ``value`` came from in an error; without a value it is the environment's.
    """
    source = flag if value else "SHIPYARD_REGISTRY"
    text = (value or os.environ.get("SHIPYARD_REGISTRY") or DEFAULT_REGISTRY).strip().rstrip("/")
    host, _, namespace = text.partition("/")
    looks_like_host = "." in host or ":" in host or host == "localhost"
    if not HOST_RE.match(host) or not looks_like_host or not namespace:
        raise ConfigError(
            f"{source}: {text!r}: expected host[:port]/namespace, e.g. ghcr.io/acme or {DEFAULT_REGISTRY}"
        )
    if not PATH_RE.match(namespace):
        raise ConfigError(
            f"{source}: {text!r}: expected the namespace after the host to be lowercase path "
            f"components (a-z, 0-9, '.', '_', '-', '/'), e.g. ghcr.io/acme/ai-system"
        )
    return RegistryTarget(host=host, namespace=namespace)
