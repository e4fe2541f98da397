"""The swarm applier without an engine: which host port the live check asks each task on, and when the
wait for a stack to converge ends early (fake Docker SDK objects)."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from shipyard.release.deploy.docker_cli import ApplyFailed, DockerCli
from shipyard.release.deploy.swarm_apply import SwarmApplier
from shipyard.release.engine import TargetEngine
from shipyard.runner import Runner

STACK = "shipyard-fleet"
NEW, OLD = "r/cpu/svc@sha256:" + "b" * 64, "r/cpu/svc@sha256:" + "a" * 64
DEPLOY_AT = "2026-01-01T10:00:00.5Z"  # the engine's clock when the deploy starts


def task(
    container: str,
    ports: list[int],
    *,
    state: str = "running",
    image: str = NEW,
    created: str = "2026-01-01T10:00:01.123456789Z",
    err: str = "",
    target: int = 6557,
) -> dict[str, Any]:
    """A task as ``GET /tasks`` lists it: its published ports carry no host address."""
    status: dict[str, Any] = {
        "State": state,
        "Timestamp": created,
        "Message": "started" if state == "running" else state,
        "ContainerStatus": {"ContainerID": container},
        "PortStatus": {
            "Ports": [
                {"Protocol": "tcp", "TargetPort": target, "PublishedPort": p, "PublishMode": "host"} for p in ports
            ]
        },
    }
    if err:
        status["Err"] = err
    return {
        "CreatedAt": created,
        "DesiredState": "running" if state == "running" else "shutdown",
        "Spec": {"ContainerSpec": {"Image": image}},
        "Status": status,
    }


def bound(v4: int, v6: int, target: int = 6557) -> dict[str, Any]:
    """A container's ``attrs`` with its port published on 0.0.0.0 and [::], as an engine with IPv6 does."""
    bindings = [{"HostIp": "0.0.0.0", "HostPort": str(v4)}, {"HostIp": "::", "HostPort": str(v6)}]
    return {"NetworkSettings": {"Ports": {f"{target}/tcp": bindings}}}


@dataclass
class FakeService:
    short: str
    tasks_: list[dict[str, Any]]
    update: dict[str, Any] | None = None
    replicas: int = 2
    image: str = NEW

    @property
    def name(self) -> str:
        return f"{STACK}_{self.short}"

    @property
    def attrs(self) -> dict[str, Any]:
        spec = {
            "TaskTemplate": {"ContainerSpec": {"Image": self.image}},
            "Mode": {"Replicated": {"Replicas": self.replicas}},
        }
        return {"Spec": spec, **({"UpdateStatus": self.update} if self.update else {})}

    def tasks(self, filters: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        wanted = (filters or {}).get("desired-state")
        return [t for t in self.tasks_ if wanted is None or t["DesiredState"] == wanted]


@dataclass
class FakeContainer:
    attrs: dict[str, Any]


@dataclass
class FakeContainers:
    known: dict[str, dict[str, Any]]
    asked: list[str] = field(default_factory=list)

    def get(self, container_id: str) -> FakeContainer:
        self.asked.append(container_id)
        if container_id not in self.known:
            raise docker.errors.NotFound(f"No such container: {container_id}")
        return FakeContainer(self.known[container_id])


@dataclass
class FakeServices:
    found: list[FakeService]

    def list(self, filters: Mapping[str, str]) -> list[FakeService]:
        assert filters == {"label": f"com.docker.stack.namespace={STACK}"}
        return self.found


class FakeClient:
    def __init__(self, services: list[FakeService], containers: dict[str, dict[str, Any]] | None = None) -> None:
        self.services = FakeServices(services)
        self.containers = FakeContainers(containers or {})

    def info(self) -> dict[str, Any]:
        return {"SystemTime": DEPLOY_AT}


def applier(
    client: FakeClient, tmp_path: Path, probe_host: str = "127.0.0.1", publish: str = "host", **kw: Any
) -> SwarmApplier:
    engine = TargetEngine("fleet", "unix:///var/run/docker.sock", "", probe_host)
    cli = DockerCli(engine, Runner(dry_run=True), {}, lambda event: None)
    return SwarmApplier(cli, client, tmp_path, publish=publish, **kw)


# --- which port per task -------------------------------------------------------------------------------


def issue_tasks() -> tuple[FakeService, dict[str, dict[str, Any]]]:
    """Two tasks, each published twice with different v4 and v6 ports; one's v6 port is the other's v4 port."""
    service = FakeService("svc", [task("c1", [32781, 32775]), task("c2", [32782, 32781])])
    return service, {"c1": bound(32781, 32775), "c2": bound(32782, 32781)}


def test_each_task_is_asked_once_on_its_ipv4_port_when_the_probe_host_is_ipv4(tmp_path: Path) -> None:
    service, containers = issue_tasks()
    client = FakeClient([service], containers)
    assert applier(client, tmp_path, probe_host="10.79.0.2").live_ports("svc", 6560, 6557) == [32781, 32782]
    assert sorted(client.containers.asked) == ["c1", "c2"]


def test_an_ipv6_probe_host_gets_the_ipv6_ports(tmp_path: Path) -> None:
    service, containers = issue_tasks()
    assert applier(FakeClient([service], containers), tmp_path, probe_host="fd00:79::2").live_ports(
        "svc", 6560, 6557
    ) == [32775, 32781]


def test_one_port_for_both_families_needs_no_container(tmp_path: Path) -> None:
    client = FakeClient([FakeService("svc", [task("c1", [32768, 32768]), task("c2", [32769])])])
    assert applier(client, tmp_path).live_ports("svc", 6560, 6557) == [32768, 32769]
    assert client.containers.asked == []


def test_only_running_tasks_and_the_service_port_count(tmp_path: Path) -> None:
    tasks = [
        task("c1", [32768]),
        task("c2", [32770], state="starting"),
        task("c3", [32771], state="failed"),
        {**task("c4", [32772]), "Status": {**task("c4", [32772])["Status"], "PortStatus": {}}},
        task("c5", [32773], target=9999),
    ]
    assert applier(FakeClient([FakeService("svc", tasks)]), tmp_path).live_ports("svc", 6560, 6557) == [32768]


def test_the_routing_mesh_is_asked_on_the_published_port(tmp_path: Path) -> None:
    service, containers = issue_tasks()
    assert applier(FakeClient([service], containers), tmp_path, publish="ingress").live_ports("svc", 6560, 6557) == [
        6560
    ]


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (the backlog takes them; nothing needs to answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture
def refusing() -> int:
    """A port on 127.0.0.1 nothing listens on: a connection to it is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_task_whose_container_cannot_be_read_gets_the_port_that_accepts_a_connection(
    tmp_path: Path, listening: int, refusing: int
) -> None:
    client = FakeClient([FakeService("svc", [task("elsewhere", [refusing, listening])])])  # another node's task
    assert applier(client, tmp_path).live_ports("svc", 6560, 6557) == [listening]
    assert client.containers.asked == ["elsewhere"]


def test_without_an_answering_port_it_is_the_first_listed(tmp_path: Path, refusing: int) -> None:
    other = refusing + 1 if refusing < 65535 else refusing - 1
    client = FakeClient([FakeService("svc", [task("elsewhere", [refusing, other])])])
    assert applier(client, tmp_path).live_ports("svc", 6560, 6557) == [refusing]


# --- the convergence wait ------------------------------------------------------------------------------


class Sleeps:
    """A sleep that only counts; the wait's clock is real, so a wait that never ends early fails the test."""

    def __init__(self, limit: int = 50) -> None:
        self.calls, self.limit = 0, limit

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        assert self.calls <= self.limit, "the wait did not end early"


def up(service: FakeService, tmp_path: Path, timeout_s: float = 600) -> tuple[str, int]:
    sleeps = Sleeps()
    with pytest.raises(ApplyFailed) as failed:
        applier(FakeClient([service]), tmp_path, sleep=sleeps).up({"services": {"svc": {}}}, timeout_s)
    return str(failed.value), sleeps.calls


def crashed(n: int, created: str = "2026-01-01T10:00:0{n}.1Z", image: str = NEW) -> list[dict[str, Any]]:
    return [
        task(f"x{i}", [], state="failed", image=image, created=created.format(n=i), err="task: non-zero exit (3)")
        for i in range(1, n + 1)
    ]


def test_tasks_of_the_new_spec_failing_again_and_again_end_the_wait_with_swarms_error(tmp_path: Path) -> None:
    message, sleeps = up(FakeService("svc", crashed(3)), tmp_path)
    assert message == "svc: 3 tasks failed (failed): task: non-zero exit (3)"
    assert sleeps == 0  # the first look says so: not 600 s of waiting


def test_a_rejected_task_says_why_it_could_not_start(tmp_path: Path) -> None:
    no_image = [
        task(f"r{i}", [], state="rejected", created=f"2026-01-01T10:00:0{i}Z", err="No such image: r/cpu/svc@sha256:b")
        for i in range(1, 4)
    ]
    message, _ = up(FakeService("svc", no_image), tmp_path)
    assert message == "svc: 3 tasks failed (rejected): No such image: r/cpu/svc@sha256:b"


def test_a_task_failing_once_or_failures_from_before_the_deploy_do_not_end_the_wait(tmp_path: Path) -> None:
    old = crashed(5, created="2026-01-01T09:59:5{n}Z")  # an earlier deploy's, on the same image
    others = crashed(3, image=OLD)  # the spec before
    service = FakeService("svc", [*old, *others, *crashed(2), task("c1", [32768])])
    message, _ = up(service, tmp_path, timeout_s=0)
    assert message == "not converged in 0s: converging: svc"


def test_while_swarm_rolls_back_the_wait_goes_on_until_its_rollback_ends(tmp_path: Path) -> None:
    rolling = {"State": "rollback_started", "StartedAt": "2026-01-01T10:00:01Z", "Message": "update rolling back"}
    message, _ = up(FakeService("svc", crashed(4), update=rolling), tmp_path, timeout_s=0)
    assert message == "not converged in 0s: converging: svc"


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("paused", "Swarm paused the update of svc: update paused due to failure or early termination of task x1"),
        ("rollback_completed", "Swarm rolled svc back: update paused due to failure or early termination of task x1"),
    ],
)
def test_an_update_swarm_gave_up_on_ends_the_wait(tmp_path: Path, state: str, expected: str) -> None:
    status = {
        "State": state,
        "StartedAt": "2026-01-01T10:00:01Z",
        "Message": "update paused due to failure or early termination of task x1",
    }
    message, sleeps = up(FakeService("svc", [task("c1", [32768])], update=status), tmp_path)
    assert (message, sleeps) == (expected, 0)


def test_an_earlier_deploys_rollback_is_not_this_ones(tmp_path: Path) -> None:
    status = {"State": "rollback_completed", "StartedAt": "2026-01-01T09:00:00Z", "Message": "rolled back earlier"}
    service = FakeService("svc", [task("c1", [32768]), task("c2", [32769])], update=status)
    applier(FakeClient([service]), tmp_path, sleep=Sleeps()).up({"services": {"svc": {}}}, 600)  # converged
