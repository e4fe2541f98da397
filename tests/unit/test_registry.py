from __future__ import annotations

import pytest

from shipyard.config.registry import parse_registry
from shipyard.errors import ConfigError


def test_default_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIPYARD_REGISTRY", raising=False)
    target = parse_registry(None)
    assert (target.host, target.namespace, target.is_local) == ("localhost:5000", "shipyard", True)
    assert target.api_base == "http://localhost:5000"


def test_ghcr_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_REGISTRY", "ghcr.io/acme/ai-system")
    target = parse_registry(None)
    assert target.is_ghcr and target.ref("mainpc", "model-ops") == "ghcr.io/acme/ai-system/mainpc/model-ops"
    assert target.api_base == "https://ghcr.io"


@pytest.mark.parametrize("value", ["ghcr.io", "ghcr.io/Acme", "acme/images", "http://ghcr.io/acme", "ghcr.io//x"])
def test_malformed_registry(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^--registry: "):
        parse_registry(value)
