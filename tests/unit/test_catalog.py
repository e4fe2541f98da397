from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config.catalog import check_image_profiles, load_catalog
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
        (
            'module = "svc"',
            'module = "svc"\ncommand = ["/app/server"]',
            "shipyard.toml: images.svc.service.command: give either module (a Python service) or command",
        ),
        ('module = "svc"', "command = []", "shipyard.toml: images.svc.service.command: expected the service's command"),
        ('module = "svc"\n', "", "shipyard.toml: images.svc.service.module: missing: a Jinja-templated service"),
        (
            'parent = "family-web"',
            'parent = "family-web"\nskip_checks = [{check = "tinni", reason = "own init"}]',
            "shipyard.toml: images.svc.skip_checks[0].check: unknown check 'tinni' (did you mean 'tini'?)",
        ),
        (
            'parent = "family-web"',
            'parent = "family-web"\nskip_checks = [{check = "tini"}]',
            "shipyard.toml: images.svc.skip_checks[0].reason: missing (required)",
        ),
        (
            'parent = "family-web"',
            'parent = "family-web"\nskip_checks = [{check = "tag", reason = "x"}]',
            "shipyard.toml: images.svc.skip_checks[0].check: unknown check 'tag'",
        ),
        (
            'parent = "family-web"',
            'parent = "family-web"\nprofiles = []',
            "shipyard.toml: images.svc.profiles: expected at least one profile",
        ),
        (
            'parent = "family-web"',
            'parent = "family-web"\nbuild_args = {HF_TOKEN = "x"}',
            "shipyard.toml: images.svc.build_args.HF_TOKEN: looks like a secret",
        ),
        (
            'template = "service.Dockerfile.j2"',
            'template = "Dockerfile"',
            "shipyard.toml: images.svc.template: no Dockerfile 'Dockerfile' in dockerfiles/ or in services/svc/",
        ),
    ],
)
def test_catalog_errors(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in SERVICE
    root = catalog_with(tmp_path, SERVICE.replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_catalog(root)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ('user = "0:0"', 'shipyard.toml: policy.user: expected a non-root "uid:gid"'),
        ('user = "app"', 'shipyard.toml: policy.user: expected a non-root "uid:gid" like "10001:10001", got \'app\''),
        ("required_labels = ['Bad Label']", "shipyard.toml: policy.required_labels[0]: expected a label key"),
        ("size_budget_mb = 0", "shipyard.toml: policy.size_budget_mb: expected a positive number of MB, got 0"),
        ("uid = 1", "shipyard.toml: policy.uid: unknown key; allowed: user, required_labels, size_budget_mb"),
    ],
)
def test_policy_errors(tmp_path: Path, policy: str, message: str) -> None:
    root = catalog_with(tmp_path, SERVICE)
    text = (root / "shipyard.toml").read_text()
    (root / "shipyard.toml").write_text(
        text.replace("[images.base-python]", f"[policy]\n{policy}\n\n[images.base-python]")
    )
    with pytest.raises(ConfigError) as err:
        load_catalog(root)
    assert str(err.value).startswith(message), str(err.value)


def test_policy_and_per_image_settings_are_read(tmp_path: Path) -> None:
    extra = 'profiles = ["cpu"]\nbuild_args = {MODE = "fast"}\nskip_checks = [{check = "tini", reason = " own init "}]'
    root = catalog_with(tmp_path, SERVICE.replace('parent = "family-web"', f'parent = "family-web"\n{extra}'))
    text = (root / "shipyard.toml").read_text()
    policy = (
        '[policy]\nuser = "1000:2000"\nrequired_labels = ["org.opencontainers.image.licenses"]\nsize_budget_mb = 900\n'
    )
    (root / "shipyard.toml").write_text(text.replace("[images.base-python]", policy + "\n[images.base-python]"))
    catalog = load_catalog(root)
    assert catalog.policy.user == "1000:2000" and catalog.policy.size_budget_mb == 900
    assert catalog.policy.required_labels == ("org.opencontainers.image.licenses",)
    svc = catalog.images["svc"]
    assert svc.profiles == ("cpu",) and svc.on("cpu") and not svc.on("pc2")
    assert svc.build_args == {"MODE": "fast"} and svc.skip_checks == {"tini": "own init"}
    assert catalog.images["family-web"].on("pc2")  # no profiles key: every profile


@pytest.mark.parametrize(
    ("svc_profiles", "web_profiles", "message"),
    [
        (
            '["cpu", "pc3"]',
            None,
            "shipyard.toml: images.svc.profiles[1]: unknown profile 'pc3' (did you mean 'pc2'?); "
            "profiles/ has: cpu, pc2",
        ),
        (
            None,
            '["cpu"]',
            "shipyard.toml: images.family-ml.profiles: family-ml is built for pc2 but its parent family-web is not "
            "(family-web.profiles = ['cpu'])",
        ),
        (
            '["pc2"]',
            '["cpu"]',
            "shipyard.toml: images.family-ml.profiles: family-ml is built for pc2",
        ),
    ],
)
def test_a_child_needs_its_parent_on_each_of_its_profiles(
    tmp_path: Path, svc_profiles: str | None, web_profiles: str | None, message: str
) -> None:
    root = catalog_with(tmp_path, SERVICE.replace('parent = "family-web"', 'parent = "family-ml"'))
    text = (root / "shipyard.toml").read_text()
    if svc_profiles:
        text = text.replace(
            'parent = "family-ml"\n[images.svc.service]',
            f'parent = "family-ml"\nprofiles = {svc_profiles}\n[images.svc.service]',
        )
    if web_profiles:
        text = text.replace('parent = "base-python"', f'parent = "base-python"\nprofiles = {web_profiles}')
    (root / "shipyard.toml").write_text(text)
    catalog = load_catalog(root)
    with pytest.raises(ConfigError) as err:
        check_image_profiles(catalog, ["cpu", "pc2"])
    assert str(err.value).startswith(message), str(err.value)
    assert err.value.file == "shipyard.toml" and err.value.line
