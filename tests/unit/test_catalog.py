from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config.catalog import load_catalog
from shipyard.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SERVICE = """
[images.svc]
kind = "service"
template = "service.Dockerfile.j2"
context = "services/svc"
parent = "family-web"
[images.svc.service]
port = 8080
health = "/health"
module = "svc"
[images.svc.service.golden]
path = "/v1/predict"
request = {x = 1}
expect = {y = 2}
"""


def test_repo_catalog() -> None:
    catalog = load_catalog(REPO)
    assert {"base-python", "family-web", "family-ml"} <= set(catalog.images)
    services = {n: s.service for n, s in catalog.images.items() if s.service}
    assert services["model-ops-coordinator"].port == 8212  # type: ignore[union-attr]
    assert services["real-time-audio-pipeline"].protocol == "websocket"  # type: ignore[union-attr]
    assert services["affective-processing-center"].port == 6560  # type: ignore[union-attr]
    for svc in services.values():
        assert svc is not None and svc.health == "/health" and svc.golden.expect


def catalog_with(tmp_path: Path, service_text: str) -> Path:
    root = tmp_path / "p"
    (root / "services" / "svc").mkdir(parents=True)
    (root / "dockerfiles").mkdir()
    for name in ("service.Dockerfile.j2", "family.Dockerfile.j2", "base-python.Dockerfile.j2"):
        (root / "dockerfiles" / name).write_text("")
    (root / "families").mkdir()
    text = (REPO / "shipyard.toml").read_text().split("\n[images.model-ops")[0]
    (root / "shipyard.toml").write_text(text + service_text)
    import shutil

    shutil.copytree(REPO / "families", root / "families", dirs_exist_ok=True)
    return root


def test_small_catalog(tmp_path: Path) -> None:
    catalog = load_catalog(catalog_with(tmp_path, SERVICE))
    assert catalog.images["svc"].service.golden.method == "POST"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'parent = "family-web"',
            'parent = "family-wbe"',
            "shipyard.toml: images.svc.parent: unknown image 'family-wbe' (did you mean 'family-web'?)",
        ),
        (
            "port = 8080",
            "port = 70000",
            "shipyard.toml: images.svc.service.port: expected a TCP port 1-65535, got 70000",
        ),
        ("port = 8080", 'port = "8080"', 'shipyard.toml: images.svc.service.port: expected an integer, got "8080"'),
        ('health = "/health"\n', "", "shipyard.toml: images.svc.service.health: missing (required)"),
        (
            'context = "services/svc"',
            'context = "services/nope"',
            "shipyard.toml: images.svc.context: directory 'services/nope' does not exist",
        ),
        ('kind = "service"', 'kind = "servise"', 'shipyard.toml: images.svc.kind: expected "family" or "service"'),
        (
            'module = "svc"',
            'module = "svc"\nportt = 1',
            "shipyard.toml: images.svc.service.portt: unknown key (did you mean 'port'?)",
        ),
        (
            'template = "service.Dockerfile.j2"',
            'template = "nope.j2"',
            "shipyard.toml: images.svc.template: dockerfiles/nope.j2 does not exist",
        ),
        ("request = {x = 1}", "request = {x = 1", "shipyard.toml: invalid TOML"),
        (
            'parent = "family-web"',
            'parent = "family-web"\nbuild_secrets = ["HF-TOKEN"]',
            "shipyard.toml: images.svc.build_secrets[0]: expected an environment variable name, got 'HF-TOKEN'",
        ),
        (
            'parent = "family-web"',
            'parent = "svc"',
            "shipyard.toml: images.svc.parent: parents form a cycle: svc -> svc; expected a chain that ends at base:",
        ),
    ],
)
def test_catalog_errors(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in SERVICE
    root = catalog_with(tmp_path, SERVICE.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_catalog(root)
    assert str(err.value).startswith(message), str(err.value)
