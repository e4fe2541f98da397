"""Deploy targets and their Compose project: parsed and checked like every key, hardened, by digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config.project import load_project
from shipyard.errors import ConfigError, PromoteRefused
from shipyard.record import ReleaseRecord, UnitRecord
from shipyard.release.deploy.compose import Placed, compose_project, from_release, target_named
from shipyard.verdicts import CanaryVerdict, ScanVerdict, UnitVerdicts, VerifyVerdict
from tests.conftest import make_project

DIGEST = "sha256:" + "a" * 64
SERVICE = "affective-processing-center"


def project_with(tmp_path: Path, targets: str) -> Path:
    root = make_project(tmp_path / "p", services=(SERVICE,), profiles=("cpu", "mainpc"), commit=False)
    (root / "shipyard.toml").write_text((root / "shipyard.toml").read_text() + targets)
    return root


LOCAL = '\n[targets.local]\nprofile = "cpu"\nengine = "unix:///var/run/docker.sock"\nsecrets = ["HF_TOKEN"]\n'
GPU = '\n[targets.mainpc]\nprofile = "mainpc"\nengine = "ssh://ops@mainpc"\ncanary = true\n'


def test_targets_are_read_with_their_defaults(tmp_path: Path) -> None:
    project = load_project(project_with(tmp_path, LOCAL + GPU))
    local, mainpc = target_named(project.catalog, "local"), target_named(project.catalog, "mainpc")
    assert local.services == () and local.secrets == ("HF_TOKEN",) and not local.canary
    assert mainpc.canary and mainpc.engine == "ssh://ops@mainpc"
    assert project.catalog.services_of("cpu") == [SERVICE]
    with pytest.raises(ConfigError, match=r"^--target: unknown target 'nope'; shipyard.toml has: local, mainpc$"):
        target_named(project.catalog, "nope")


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (
            LOCAL.replace('profile = "cpu"', 'profile = "pc3"'),
            "shipyard.toml: targets.local.profile: unknown profile 'pc3'",
        ),
        (
            LOCAL.replace("unix:///var/run/docker.sock", "docker.sock"),
            "shipyard.toml: targets.local.engine: expected unix:///",
        ),
        (
            LOCAL + 'services = ["model-ops"]\n',
            "shipyard.toml: targets.local.services[0]: 'model-ops' is not a service",
        ),
        (
            LOCAL.replace('["HF_TOKEN"]', '["HF-TOKEN"]'),
            "shipyard.toml: targets.local.secrets[0]: expected an environment",
        ),
        (LOCAL + "canry = true\n", "shipyard.toml: targets.local.canry: unknown key (did you mean 'canary'?)"),
        (LOCAL + 'mode = "k8s"\n', "shipyard.toml: targets.local.mode: expected one of compose, swarm, got 'k8s'"),
        (LOCAL + 'publish = "host"\n', 'shipyard.toml: targets.local.publish: applies to mode = "swarm" only'),
        (
            LOCAL + "[targets.local.ports]\nmodel-ops = 8000\n",
            "shipyard.toml: targets.local.ports.model-ops: not a service",
        ),
        (
            LOCAL + f"[targets.local.ports]\n{SERVICE} = 70000\n",
            f"shipyard.toml: targets.local.ports.{SERVICE}: expected a port",
        ),
    ],
)
def test_target_errors_name_the_key(tmp_path: Path, targets: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_project(project_with(tmp_path, targets))
    assert str(err.value).startswith(message), str(err.value)


def test_the_project_is_hardened_by_digest_with_secrets_by_reference(tmp_path: Path) -> None:
    project = load_project(project_with(tmp_path, LOCAL + GPU))
    placed = [
        Placed(SERVICE, f"localhost:5000/s/cpu/{SERVICE}@{DIGEST}", "20250111-abcdef12", "10001:10001", 6560, {}, 20)
    ]
    cpu = compose_project(target_named(project.catalog, "local"), project.profiles["cpu"], placed, "channel stable")
    service = cpu["services"][SERVICE]
    assert service["image"].endswith(f"@{DIGEST}") and service["user"] == "10001:10001"
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"] and service["restart"] == "unless-stopped"
    assert service["environment"] == {"HF_TOKEN": "${HF_TOKEN:?HF_TOKEN must be set}"}
    assert service["volumes"] == ["models:/models"] and service["ports"] == ["6560:6560"]
    assert "deploy" not in service  # cpu: no GPU
    gpu = compose_project(target_named(project.catalog, "mainpc"), project.profiles["mainpc"], placed, "x")
    devices = gpu["services"][SERVICE]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


def test_a_release_that_did_not_pass_its_gates_is_refused(tmp_path: Path) -> None:
    project = load_project(project_with(tmp_path, LOCAL))
    unit = UnitRecord(
        profile="cpu", image=SERVICE, kind="service", platform="linux/amd64", repository=f"r/cpu/{SERVICE}",
        tag="t", digest=DIGEST, size=1, parent="", duration_s=1, steps=1, cache_hits=0,
        expect={"user": "10001:10001", "service": {"port": 6560}},
    )  # fmt: skip
    record = ReleaseRecord(
        release="20250111-abcdef12", revision="x", created="c", registry="r", units={f"cpu/{SERVICE}": unit}
    )
    target = target_named(project.catalog, "local")
    with pytest.raises(
        PromoteRefused, match=rf"^target local: 20250111-abcdef12 refused: cpu/{SERVICE}: no verify verdict"
    ):
        from_release(record, project.catalog, target)
    unit.verdicts = UnitVerdicts(VerifyVerdict(passed=True), ScanVerdict(passed=True), CanaryVerdict(passed=True))
    assert [p.ref for p in from_release(record, project.catalog, target)] == [f"r/cpu/{SERVICE}@{DIGEST}"]
