"""The edge's state and HAProxy config, the colours' ports and settings, the blue-green plan, the target
lock, the status drift and the deploy settings of a target: all without an engine (fakes for the SDK)."""

from __future__ import annotations

import doctest
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shipyard.config.reader import Table
from shipyard.config.targets import Target, parse_targets
from shipyard.errors import ConfigError, TargetBusy
from shipyard.release.deploy import colours, edge_config, status
from shipyard.release.deploy.blue_green import EdgeStrategy
from shipyard.release.deploy.colours import (
    COLOUR_LABEL,
    PORT_LABEL,
    SERVICE_LABEL,
    SETTINGS_LABEL,
    bind_address,
    candidate_ports,
    colour_definition,
    settings_digest,
)
from shipyard.release.deploy.compose import RELEASE_LABEL, TARGET_LABEL
from shipyard.release.deploy.deployments import Deployment, DeploymentLedger
from shipyard.release.deploy.edge_config import EdgeState, Route, other, render, switch_commands
from shipyard.release.deploy.lock import target_lock
from shipyard.release.deploy.status import ServiceStatus, TargetStatus, find_drift
from shipyard.release.deploy.steps import StepLog
from shipyard.release.engine import TargetEngine

A, B = "r/cpu/api@sha256:" + "a" * 64, "r/cpu/api@sha256:" + "b" * 64


def test_doctests() -> None:
    for module in (edge_config, colours, status):
        assert doctest.testmod(module).failed == 0, module.__name__


# --- the edge's config ------------------------------------------------------------------------------


def test_the_live_colour_is_ready_the_other_parked_and_the_hold_is_retries() -> None:
    state = EdgeState({"api": Route(8080, "green", {"blue": "127.0.0.1:20001", "green": "127.0.0.1:20002"}, 4.5)})
    config = render(state)
    assert "    bind :8080\n" in config
    assert "    server blue 127.0.0.1:20001 disabled\n" in config
    assert "    server green 127.0.0.1:20002\n" in config
    assert "    retries 5\n" in config and "option redispatch 1" in config
    assert "expose-fd listeners" in config  # a reload hands the listening sockets over: none is closed
    assert render(state) == config  # deterministic: the same state, the same bytes


def test_an_edge_without_services_still_renders_a_config_haproxy_starts_with() -> None:
    assert "listen idle" in render(EdgeState())


def test_a_switch_sets_the_new_address_then_ready_then_parks_the_old() -> None:
    before = Route(8080, "blue", {"blue": "127.0.0.1:20001"})
    after = before.switched("green", "127.0.0.1:20002")
    assert switch_commands("api", before, after) == [
        "set server be_api/green addr 127.0.0.1 port 20002",
        "set server be_api/green state ready",
        "set server be_api/blue state maint",
    ]
    assert other("blue") == "green" and other("") == "blue"


def test_the_state_round_trips_through_its_json_and_a_switch_changes_no_listener() -> None:
    state = EdgeState({"api": Route(8080, "blue", {"blue": "127.0.0.1:20001"}, 30.0)}, drain_s=7.0)
    assert EdgeState.from_json(state.to_json()) == state
    switched = state.with_route("api", state.routes["api"].switched("green", "127.0.0.1:20002"))
    assert switched.listeners() == state.listeners() == {"api": 8080}
    assert state.with_route("web", Route(9090, "blue")).listeners() == {"api": 8080, "web": 9090}
    assert state.with_route("api", None).listeners() == {}


# --- colours ---------------------------------------------------------------------------------------


def service(release: str, image: str = A, memory: str = "1g") -> dict[str, Any]:
    return {"image": image, "mem_limit": memory, "ports": ["6560:6560"], "labels": {RELEASE_LABEL: release, "x": "y"}}


def test_settings_ignore_the_release_name_and_the_ports_but_not_the_limits() -> None:
    assert settings_digest(service("r1")) == settings_digest(service("r2"))
    assert settings_digest(service("r1")) != settings_digest(service("r1", memory="2g"))
    assert settings_digest(service("r1")) != settings_digest(service("r1", image=B))


def test_a_colour_publishes_on_its_own_port_only_and_carries_its_labels() -> None:
    project = {"services": {"api": service("r1")}, "volumes": {}, "x-shipyard": {"target": "t"}}
    definition = colour_definition(project, "api", "green", "127.0.0.1", 21000, 6560)
    (item,) = definition["services"].values()
    assert definition["name"] == "shipyard-t-api-green"
    assert item["ports"] == ["127.0.0.1:21000:6560"]
    assert item["labels"][COLOUR_LABEL] == "green" and item["labels"][PORT_LABEL] == "21000"
    assert item["labels"][SETTINGS_LABEL] == settings_digest(service("r1"))


def test_colour_ports_are_stable_and_skip_what_is_used() -> None:
    first = candidate_ports("t", "api", "blue", avoid=())
    assert first == candidate_ports("t", "api", "blue", avoid=())
    assert all(20000 <= p < 26000 for p in first) and len(set(first)) == len(first)
    assert candidate_ports("t", "api", "blue", avoid={first[0]})[0] == first[1]
    assert bind_address("127.0.0.1") == "127.0.0.1"
    assert bind_address("10.80.0.2") == "10.80.0.2"
    assert bind_address("mainpc.lan") == "0.0.0.0"


# --- the blue-green plan, from what an engine runs --------------------------------------------------


@dataclass
class FakeContainer:
    labels: dict[str, str]
    image: str
    status: str = "running"
    health: str = "healthy"
    id: str = "c1"

    @property
    def attrs(self) -> dict[str, Any]:
        state = {"Status": self.status, "Health": {"Status": self.health}, "StartedAt": "2026-12-04T10:00:00.5Z"}
        return {"Config": {"Image": self.image}, "State": state, "HostConfig": {"PortBindings": {}}}


@dataclass
class FakeContainers:
    items: list[FakeContainer] = field(default_factory=list)

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[FakeContainer]:  # noqa: A002
        wanted = (filters or {}).get("label", [])
        wanted = [wanted] if isinstance(wanted, str) else wanted
        found = []
        for c in self.items:
            ok = True
            for w in wanted:
                key, _, value = w.partition("=")
                ok = ok and key in c.labels and (not value or c.labels[key] == value)
            if ok:
                found.append(c)
        return found


@dataclass
class FakeClient:
    containers: FakeContainers


class FakeEdge:
    def __init__(self, state: EdgeState | None) -> None:
        self._state = state
        self.serving = state

    def state(self) -> EdgeState | None:
        return self._state

    def container(self) -> object | None:
        return object() if self._state is not None else None

    def image(self) -> str:
        return "edge@sha256:1"

    def in_sync(self, state: EdgeState) -> bool:
        return self.serving == state


def colour_container(svc: str, colour: str, image: str, settings: str, release: str = "r1") -> FakeContainer:
    labels = {TARGET_LABEL: "t", SERVICE_LABEL: svc, COLOUR_LABEL: colour, SETTINGS_LABEL: settings,
              RELEASE_LABEL: release, PORT_LABEL: "21000"}  # fmt: skip
    return FakeContainer(labels, image)


def strategy(containers: list[FakeContainer], state: EdgeState | None) -> EdgeStrategy:
    target = Target("t", "cpu", "unix:///s")
    engine = TargetEngine("t", "unix:///s", "", "127.0.0.1")
    client = FakeClient(FakeContainers(containers))
    cli = SimpleNamespace(engine=engine)  # only named: the plan runs no command
    s = EdgeStrategy(target, engine, client, cli, Path("/nonexistent"), lambda event: None)  # type: ignore[arg-type]
    s.edge = FakeEdge(state)  # type: ignore[assignment]
    s.proxy_image = "edge@sha256:1"
    return s


@dataclass(frozen=True)
class P:
    service: str
    ref: str


def test_only_a_service_whose_digest_or_settings_changed_moves_to_the_other_colour() -> None:
    api, web = service("r2", A), service("r2", B)
    project = {"services": {"api": api, "web": web}, "volumes": {}, "x-shipyard": {"target": "t"}}
    checks = {"api": {"port": 8080}, "web": {"port": 9090}}
    running = [
        colour_container("api", "blue", A, settings_digest(api), release="r1"),  # same digest, other release
        colour_container("web", "green", A, settings_digest(web)),  # another digest
        colour_container("web", "blue", A, "old"),  # left by a killed run
    ]
    state = EdgeState({"api": Route(8080, "blue"), "web": Route(9090, "green"), "old": Route(7070, "blue")})
    s = strategy(running, state)
    moves = {m.service: m for m in s.plan(project, [P("api", A), P("web", B)], checks)}  # type: ignore[list-item]
    assert moves["api"].colour == "blue" and moves["api"].live is not None  # untouched
    assert (moves["web"].live.colour, moves["web"].colour) == ("green", "blue")  # type: ignore[union-attr]
    assert moves["old"].placed is None  # the target no longer runs it: its route goes
    assert [m.service for m in s.moving] == ["web"]
    assert s.stale() == [("web", "blue")]  # left by a killed run: removed before web moves there
    assert not s.nothing_to_do


def test_a_target_that_runs_the_plan_has_nothing_to_do() -> None:
    api = service("r2", A)
    project = {"services": {"api": api}, "volumes": {}, "x-shipyard": {"target": "t"}}
    s = strategy([colour_container("api", "green", A, settings_digest(api))], EdgeState({"api": Route(8080, "green")}))
    s.plan(project, [P("api", A)], {"api": {"port": 8080}})  # type: ignore[list-item]
    assert s.nothing_to_do
    s.plan(project, [P("api", A)], {"api": {"port": 8081}})  # type: ignore[list-item]
    assert not s.nothing_to_do  # the port moved: the edge's listener must follow
    s.edge.serving = EdgeState()  # type: ignore[attr-defined]  # HAProxy came back on an older config
    s.plan(project, [P("api", A)], {"api": {"port": 8080}})  # type: ignore[list-item]
    assert not s.nothing_to_do


def test_show_servers_state_reads_each_servers_address_and_whether_it_is_ready() -> None:
    from shipyard.release.deploy.edge import _servers

    answer = (
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
        "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
        "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
        "srv_check_addr srv_agent_addr srv_agent_port\n"
        "3 be_api 1 blue 127.0.0.1 2 0 1 1 3 1 0 2 0 0 0 0 - 20001 - 0 0 - - 0\n"
        "3 be_api 2 green 127.0.0.1 0 5 1 1 3 1 0 0 8 0 0 0 - 1 - 0 0 - - 0\n"
    )
    assert _servers(answer) == {
        ("be_api", "blue"): ("127.0.0.1:20001", True),
        ("be_api", "green"): ("127.0.0.1:1", False),
    }


def test_an_unhealthy_live_container_moves_even_on_the_same_digest() -> None:
    api = service("r2", A)
    project = {"services": {"api": api}, "volumes": {}, "x-shipyard": {"target": "t"}}
    sick = colour_container("api", "green", A, settings_digest(api))
    sick.health = "unhealthy"
    s = strategy([sick], EdgeState({"api": Route(8080, "green")}))
    (move,) = s.plan(project, [P("api", A)], {"api": {"port": 8080}})  # type: ignore[list-item]
    assert move.colour == "blue"


# --- the target lock ----------------------------------------------------------------------------------


def test_a_second_deploy_of_a_target_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "deploy-t.lock"
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with target_lock(path, "t", who="ci@builder (channel stable)"):
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(10)
    try:  # flock is per open file: a second open in this process contends like another process
        with pytest.raises(TargetBusy) as refused, target_lock(path, "t"):
            pass
    finally:
        release.set()
        holder.join()
    message = str(refused.value)
    assert message.startswith("target t: ci@builder (channel stable) is deploying it (pid ")
    assert "--lock-wait" in message and "nothing was changed" in message
    with target_lock(path, "t"):  # free again once the holder is done
        pass


def test_a_deploy_waits_for_the_lock_up_to_lock_wait(tmp_path: Path) -> None:
    path = tmp_path / "deploy-t.lock"
    clock = iter(float(i) for i in range(100))
    naps: list[float] = []
    with (
        target_lock(path, "t"),
        pytest.raises(TargetBusy, match=r"\(waited 3s\)"),
        target_lock(path, "t", 3.0, sleep=naps.append, clock=lambda: next(clock)),
    ):
        pass
    assert naps == [0.2, 0.2]  # at 1 s and 2 s; at 3 s the wait is over


# --- drift -------------------------------------------------------------------------------------------


def ledger_with(images: dict[str, str], source: str = "channel stable") -> DeploymentLedger:
    entry = Deployment("r1", source, images, {}, {}, {}, state="complete")
    return DeploymentLedger("t", [entry])


def running(**digests: str) -> TargetStatus:
    return TargetStatus(
        "t", "blue-green", [ServiceStatus(s, "r1", d, "blue", "healthy", 1.0) for s, d in digests.items()]
    )


def test_a_target_on_its_last_deployment_and_its_channel_has_no_drift() -> None:
    now = running(api="sha256:a")
    find_drift(now, ledger_with({"api": "r/api@sha256:a"}), {"api": "sha256:a"})
    assert now.drift == []


def test_drift_names_each_difference() -> None:
    now = running(api="sha256:x", extra="sha256:e")
    find_drift(now, ledger_with({"api": "r/api@sha256:a", "web": "r/web@sha256:w"}), {"web": "sha256:n"})
    text = "\n".join(now.drift)
    assert "api: runs sha256:x, which the ledger never deployed here (r1 put sha256:a)" in text
    assert "web: not running" in text
    assert "extra: runs here, but the last deployment (r1) has no such service" in text
    assert "web: channel stable now points at sha256:n, not deployed yet" in text


def test_a_stopped_service_is_drift() -> None:
    now = running(api="sha256:a")
    now.services[0] = ServiceStatus("api", "r1", "sha256:a", "blue", "exited", None)
    find_drift(now, ledger_with({"api": "r/api@sha256:a"}))
    assert now.drift == ["api: exited"]


# --- steps ---------------------------------------------------------------------------------------------


def test_each_step_is_timed_told_and_saved_and_a_failure_is_marked() -> None:
    told, saved = [], []
    log = StepLog("t", told.append, save=lambda: saved.append(len(log.steps)))
    with log.step("pull", detail="2 image(s)"):
        pass
    with pytest.raises(RuntimeError), log.step("start", "api"):
        raise RuntimeError("compose said no")
    assert [(s["step"], s["ok"]) for s in log.steps] == [("pull", True), ("start", False)]
    assert log.steps[1]["detail"] == "compose said no" and log.steps[0]["at"].endswith("Z")
    assert saved == [1, 2]
    assert told[1].message.startswith("t: start api FAILED in ")


# --- a target's deploy settings --------------------------------------------------------------------------


def targets(text: dict[str, Any]) -> dict[str, Target]:
    return parse_targets(Table({"t": {"profile": "cpu", "engine": "unix:///s", **text}}, "shipyard.toml", "targets"))


def test_a_compose_target_deploys_blue_green_behind_the_edge_by_default() -> None:
    t = targets({})["t"]
    assert (t.strategy, t.drain_s, t.hold_s, t.has_edge) == ("blue-green", 30.0, 30.0, True)
    assert not targets({"strategy": "in-place"})["t"].has_edge
    assert targets({"proxy_image": "localhost:5000/edge:1"})["t"].proxy_image == "localhost:5000/edge:1"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"strategy": "rolling"}, "targets.t.strategy: expected one of blue-green, stop-first, in-place"),
        ({"drain_s": 0}, "targets.t.drain_s: expected seconds above 0 (at most 3600), got 0"),
        ({"hold_s": -1}, "targets.t.hold_s: expected seconds above 0"),
        ({"proxy_image": "haproxy:2.6"}, "targets.t.proxy_image: 'haproxy:2.6' is not pinned by digest"),
        ({"mode": "swarm", "strategy": "stop-first"}, 'targets.t.strategy: applies to mode = "compose" only'),
    ],
)
def test_bad_deploy_settings_name_their_key(keys: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        targets(keys)


# --- the live check's wait --------------------------------------------------------------------------------


def test_a_container_that_crashed_ends_the_wait_at_once_not_after_its_ready_timeout() -> None:
    import time as clock

    from shipyard.release.deploy.live_checks import check_service
    from shipyard.release.gates.probes import Crashed

    def crashed() -> None:
        raise Crashed(3)

    probe = {"health": "/health", "ready_timeout_s": 60, "golden": {}, "protocol": "http", "slo_p95_ms": 100}
    started = clock.monotonic()
    check = check_service("127.0.0.1", 1, "api", {"probe": probe, "requests": 1}, crashed)
    assert clock.monotonic() - started < 5
    assert check.reason == "not starting: container exited with code 3" and check.short == "not starting from api"
