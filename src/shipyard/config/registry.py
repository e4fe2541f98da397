"""The registry setting (`--registry`, `SHIPYARD_REGISTRY`): where images go, checked."""

from __future__ import annotations

import os

from ..errors import ConfigError
from ..oci.reference import HOST_RE, PATH_RE, RegistryNamespace

DEFAULT_REGISTRY = "localhost:5000/shipyard"


def parse_registry(value: str | None, *, flag: str = "--registry") -> RegistryNamespace:
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
    return RegistryNamespace(host=host, namespace=namespace)
