"""Deploy logic without an engine: the plan, the rollout order and stop rule, the deployment ledger."""

from __future__ import annotations

import doctest
from dataclasses import dataclass

import pytest

from shipyard.config.registry import parse_registry
from shipyard.config.targets import Target
from shipyard.errors import ConfigError
from shipyard.oci.client import RegistryClient
from shipyard.release.deploy import rollout
from shipyard.release.deploy.deploy import DeployOutcome, plan_changes
from shipyard.release.deploy.deployments import Deployment, load_deployments, save_deployments
from shipyard.release.deploy.docker_cli import Running, failure_line
from shipyard.release.deploy.rollout import batches, roll_out
from shipyard.release.engine import check_secrets, resolve_engine
from tests.memregistry import MemoryRegistry

A, B = "r/cpu/svc@sha256:" + "a" * 64, "r/cpu/svc@sha256:" + "b" * 64


def test_the_plan_says_which_service_moves_from_what_to_what() -> None:
    running = [
        Running("svc", A, "running", "healthy"),
        Running("same", B, "running", ""),  # no healthcheck: running is settled
        Running("sick", A, "running", "unhealthy"),
        Running("gone", A, "running", "healthy"),
    ]
    changes = {c.service: c for c in plan_changes(running, {"svc": B, "same": B, "sick": A, "new": A})}
    assert {name: c.action for name, c in changes.items()} == {
        "svc": "update", "same": "noop", "sick": "create", "new": "create", "gone": "remove",
    }  # fmt: skip
    assert (changes["svc"].before, changes["svc"].after) == (A, B)
    assert changes["gone"].after is None


def test_replicas_on_two_images_are_a_service_that_moves() -> None:
    running = [Running("svc", A, "running", "healthy"), Running("svc", B, "running", "healthy")]
    assert [c.action for c in plan_changes(running, {"svc": B})] == ["create"]


def test_canary_targets_go_first_one_by_one_then_batches() -> None:
    def t(name: str, canary: bool = False) -> Target:
        return Target(name, "cpu", "unix:///s", canary=canary)

    order = batches([t("a"), t("m", True), t("b"), t("c"), t("n", True), t("d")], 2)
    assert [[x.name for x in batch] for batch in order] == [["m"], ["n"], ["a", "b"], ["c", "d"]]
    assert doctest.testmod(rollout).failed == 0


@dataclass
class FakeDeploy:
    target: Target
    fails: bool = False
    applied: bool = False
    before: str = "A"

    def apply(self) -> DeployOutcome:
        self.applied = True
        outcome = "rolled-back" if self.fails else "deployed"
        return DeployOutcome(self.target.name, "A", "A" if self.fails else "B", outcome)  # type: ignore[arg-type]


def test_the_first_failure_stops_the_rollout_and_later_targets_are_not_touched() -> None:
    canary = FakeDeploy(Target("mainpc", "cpu", "unix:///s", canary=True), fails=True)
    others = [FakeDeploy(Target(n, "cpu", "unix:///s")) for n in ("pc2", "pc3")]
    outcomes = roll_out([others[0], canary, others[1]], 2)  # type: ignore[list-item]
    assert [(o.target, o.outcome) for o in outcomes] == [
        ("mainpc", "rolled-back"), ("pc2", "not reached"), ("pc3", "not reached"),
    ]  # fmt: skip
    assert canary.applied and not any(d.applied for d in others)
    assert all(o.after == "A" for o in outcomes[1:])  # not reached: still on what they ran


def test_a_good_canary_lets_the_batches_through() -> None:
    deploys = [FakeDeploy(Target(n, "cpu", "unix:///s", canary=n == "c")) for n in ("a", "b", "c")]
    outcomes = roll_out(deploys, 5)  # type: ignore[arg-type]
    assert [o.target for o in outcomes] == ["c", "a", "b"] and all(d.applied for d in deploys)


def test_the_deployment_ledger_round_trips_through_the_registry() -> None:
    registry = RegistryClient(parse_registry("localhost:5000/acme"), transport=MemoryRegistry().transport())
    ledger = load_deployments(registry, "acme", "mainpc")
    assert ledger.entries == [] and ledger.last_good is None
    good = Deployment("20250111-aaaaaaaa", "channel stable", {"svc": A}, {}, {"name": "p"}, {}, state="complete")
    ledger.entries += [good, Deployment("20250112-bbbbbbbb", "channel stable", {"svc": B}, {"svc": A}, {}, {})]
    save_deployments(registry, "acme", ledger)
    again = load_deployments(registry, "acme", "mainpc")
    assert again.last is not None and again.last.state == "in-progress" and again.last.previous == {"svc": A}
    assert again.last_good == good
    assert load_deployments(registry, "acme", "pc2").entries == []  # one ledger per target


def test_compose_failure_is_named_by_its_line() -> None:
    output = "Container x-1  Creating\nContainer x-1  Started\ncontainer x-1 is unhealthy\n"
    assert failure_line(output) == "container x-1 is unhealthy"
    assert failure_line("a\nlast words\n") == "last words"


def test_a_missing_secret_is_refused_naming_the_key() -> None:
    target = Target("mainpc", "cpu", "ssh://ops@mainpc", secrets=("HF_TOKEN", "API_KEY"))
    with pytest.raises(ConfigError, match=r"^target mainpc: secret API_KEY not set .*targets\.mainpc\.secrets"):
        check_secrets(target, {"HF_TOKEN": "x"})
    check_secrets(target, {"HF_TOKEN": "x", "API_KEY": "y"})


@pytest.mark.parametrize(
    ("engine", "probe", "env"),
    [
        ("unix:///var/run/docker.sock", "127.0.0.1", {"DOCKER_HOST": "unix:///var/run/docker.sock"}),
        ("tcp://10.77.0.2:2375", "10.77.0.2", {"DOCKER_HOST": "tcp://10.77.0.2:2375"}),
        ("ssh://ops@mainpc", "mainpc", {"DOCKER_HOST": "ssh://ops@mainpc"}),
    ],
)
def test_the_engine_of_a_target_and_where_its_services_answer(engine: str, probe: str, env: dict[str, str]) -> None:
    resolved = resolve_engine(Target("t", "cpu", engine))
    assert resolved.probe_host == probe
    cli = resolved.cli_env({"DOCKER_CONTEXT": "other", "DOCKER_HOST": "tcp://elsewhere:1", "HF_TOKEN": "s"})
    assert cli == {**env, "HF_TOKEN": "s"}


def test_the_swarm_stack_is_the_compose_project_in_swarm_terms() -> None:
    from shipyard.config.profiles import RuntimeSettings
    from shipyard.release.deploy.swarm_apply import stack_project

    compose = {
        "name": "shipyard-fleet",
        "services": {
            "svc": {
                "image": A, "restart": "unless-stopped", "read_only": True, "tmpfs": ["/tmp:rw"], "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"], "mem_limit": "1g", "cpus": 2.0, "pids_limit": 512,
                "ports": ["18212:8212"], "volumes": ["models:/models"], "labels": {"io.shipyard.target": "fleet"},
            }
        },
        "volumes": {"models": {}},
    }  # fmt: skip
    runtime = RuntimeSettings(memory="2g", cpus=1.5, pids=256, replicas=3)
    mesh = stack_project(compose, runtime)["services"]["svc"]
    assert mesh["deploy"]["replicas"] == 3
    assert mesh["deploy"]["update_config"]["order"] == "start-first"
    assert mesh["deploy"]["update_config"]["failure_action"] == "rollback"
    assert mesh["deploy"]["resources"]["limits"] == {"memory": "2g", "cpus": "1.5", "pids": 256}
    assert mesh["ports"] == [{"target": 8212, "published": 18212, "protocol": "tcp", "mode": "ingress"}]
    assert {"type": "tmpfs", "target": "/tmp"} in mesh["volumes"] and "models:/models" in mesh["volumes"]
    assert not {"restart", "tmpfs", "mem_limit", "cpus", "pids_limit", "security_opt"} & set(mesh)
    assert mesh["image"] == A and mesh["read_only"] is True and mesh["cap_drop"] == ["ALL"]
    host = stack_project(compose, runtime, "host")["services"]["svc"]
    assert host["ports"] == [{"target": 8212, "protocol": "tcp", "mode": "host"}]  # the engine picks each task's
    assert "name" not in stack_project(compose, runtime)  # the stack's name is the deploy's argument


def test_another_release_name_is_not_a_change_but_other_settings_are() -> None:
    from shipyard.release.deploy.deploy import settings_of

    def project(release: str, memory: str) -> dict[str, object]:
        service = {
            "image": A,
            "mem_limit": memory,
            "labels": {"io.shipyard.release": release, "io.shipyard.target": "t"},
        }
        return {"services": {"svc": service}, "x-shipyard": {"from": release}}

    assert settings_of(project("20250111-aaaaaaaa", "1g")) == settings_of(project("20250112-bbbbbbbb", "1g"))
    assert settings_of(project("20250111-aaaaaaaa", "1g")) != settings_of(project("20250111-aaaaaaaa", "2g"))
