"""The OCI reference grammar (registry host, repository path, tag) and where a registry's API is."""

from __future__ import annotations

import re
from dataclasses import dataclass

HOST_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::\d{1,5})?$")
PATH_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
# a tag, as the distribution spec allows it
OCI_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class RegistryNamespace:
    """Where a release's images go: a namespace on a registry host (``--registry HOST/NAMESPACE``)."""

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
