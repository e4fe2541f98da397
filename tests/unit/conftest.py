from __future__ import annotations

import pytest

from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from tests.memregistry import MemoryRegistry


@pytest.fixture
def mem() -> MemoryRegistry:
    """An in-memory registry (tests/memregistry.py)."""
    return MemoryRegistry()


@pytest.fixture
def registry(mem: MemoryRegistry) -> RegistryClient:
    """A real client on ``mem``, retries without waiting."""
    return RegistryClient(parse_registry("localhost:5000/acme"), transport=mem.transport(), sleep=lambda _: None)
