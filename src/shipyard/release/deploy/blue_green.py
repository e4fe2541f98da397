"""Blue-green and stop-first: each changed service moves to its other colour behind the edge proxy, checked
before the switch; a failure before the switch removes only what it started, one after it switches back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...config.targets import Target
from ...events import Emit, Event
from ..engine import TargetEngine
from ..gates.probes import Crashed
from .colours import (
    ColourContainer,
    ColourProject,
    bind_address,
    colour_definition,
    colour_project_name,
    upstream_address,
)
from .compose import Placed
from .compose_apply import ComposeApplier
from .docker_cli import ApplyFailed, DockerCli
from .edge import Edge
from .edge_config import PARKED, EdgeState, Route
from .edge_plan import EdgePlan, Move
from .live_checks import Alive, ServiceCheck, check_service
from .steps import StepLog


@dataclass
class Ran:
    """How a strategy's run ended: no ``failure`` means every service answers right where users reach it."""

    failure: str = ""
    how: str = ""  # what was done about the failure
    restored: bool = False  # the target serves what it served before (nothing of the new release left)
    checks: list[ServiceCheck] = field(default_factory=list)


class EdgeStrategy:
    """Deploys behind the target's edge: ``blue-green`` (both copies at once) or ``stop-first``."""

    def __init__(
        self, target: Target, engine: TargetEngine, client: Any, cli: DockerCli, work_dir: Path, emit: Emit
    ) -> None:
        self.target = target
        self.engine = engine
        self.client = client
        self.cli = cli
        self.work_dir = work_dir
        self.emit = emit
        self.name = target.strategy
        self.edge = Edge(cli, client, work_dir, target)
        self.bind = bind_address(engine.probe_host)
        self.proxy_image = ""  # set by the caller before prepare(): the edge's image, by digest

    # --- the plan (read only: edge_plan.py) and what comes before any change --------------------------

    def plan(self, project: Mapping[str, Any], placed: Sequence[Placed], checks: Mapping[str, Any]) -> list[Move]:
        legacy = ComposeApplier(self.cli, self.client, self.work_dir)
        self.view = EdgePlan(self.target, self.engine, self.client, self.edge, legacy, self.proxy_image)
        self.view.read(project, placed, checks)
        self.project, self.checks, self.state, self.legacy = project, checks, self.view.state, self.view.legacy
        return self.view.moves

    @property
    def moves(self) -> list[Move]:
        return self.view.moves

    @property
    def moving(self) -> list[Move]:
        return self.view.moving

    @property
    def leaving(self) -> list[Move]:
        return self.view.leaving

    @property
    def containers(self) -> dict[str, dict[str, ColourContainer]]:
        return self.view.containers

    def stale(self) -> list[tuple[str, str]]:
        return self.view.stale()

    def notes(self) -> list[str]:
        return self.view.notes()

    @property
    def nothing_to_do(self) -> bool:
        return self.view.nothing_to_do

    def prepare(self, log: StepLog) -> None:
        """Pull what the deploy needs and choose the new colours' ports; refuse a port the edge cannot
        have. Nothing that serves is touched."""
        images = sorted({m.placed.ref for m in self.moving if m.placed is not None} | {self.proxy_image})
        with log.step("pull", detail=f"{len(images)} image(s)"):
            for ref in images:
                self.cli.run(["docker", "pull", "--quiet", ref])
        with log.step("ports"):
            self.view.proxy_image = self.proxy_image
            self.ports = self.view.choose_ports()

    # --- the run ---------------------------------------------------------------------------------------

    def run(self, log: StepLog) -> Ran:
        for service, colour in self.stale():
            self._quietly(log, "clean", service, f"{colour}: left by an unfinished deploy", "down", colour)
        if self.name == "stop-first":
            return self._stop_first(log)
        return self._blue_green(log)

    def _blue_green(self, log: StepLog) -> Ran:
        moving = self.moving
        with ThreadPoolExecutor(max_workers=max(1, min(4, len(moving)))) as pool:
            checks = list(pool.map(lambda m: self._stage(m, log), moving))
        failed = [c for c in checks if not c.passed]
        if failed:
            self._remove_new(moving, log)
            return Ran(_failure(failed, "on its new container"), self._kept(), True, checks)
        before = self.state
        try:
            after = self._switch(before, moving, log)
        except ApplyFailed as exc:
            self._remove_new(moving, log)
            return Ran(f"edge: {exc}", self._kept(), True)
        # nothing moved but the edge changed (its image, a port, a config it lost): check every service
        through = self._check_edge(moving or [m for m in self.moves if m.placed is not None], log)
        failed = [c for c in through if not c.passed]
        if failed:
            how = self._switch_back(after, before, moving, log)
            return Ran(_failure(failed, "through the edge"), how, True, through)
        self._drain(moving, log)
        self._remove_leaving(after, log)
        return Ran(checks=through)

    def _stop_first(self, log: StepLog) -> Ran:
        results: list[ServiceCheck] = []
        container = self.edge.container()
        if not self.view.in_sync and container is not None and container.status == "running":
            try:  # first back on its files: a reload later would cut the requests it holds
                with log.step("resync", detail="the edge served another config than its files"):
                    self.edge.apply(self.state, self.state, reload=True)
                self.view.in_sync = True
            except ApplyFailed as exc:
                return Ran(f"edge: {exc}", "nothing was stopped", True)
        for move in self.moving:
            if move.live is not None:
                why = f"{move.live.colour}: the edge holds requests meanwhile"
                # the old colour's server first points at a closed port: a request that comes while the
                # container stops is refused at once and held (retried each second), never half-answered
                try:
                    self.edge.point(move.service, move.live.colour, PARKED)
                except ApplyFailed as exc:
                    return Ran(f"edge: {exc}", f"nothing was stopped: {move.service} kept serving", True)
                if not self._quietly(log, "stop", move.service, why, "stop", move.live.colour):
                    return Ran(f"docker compose stop of {move.service} failed", self._restart_old(move, log), True)
            check = self._stage(move, log)
            if not check.passed:
                self._remove_new([move], log)
                return Ran(_failure([check], "on its new container"), self._restart_old(move, log), True, [check])
            before = self.state
            try:
                after = self._switch(before, [move], log)
            except ApplyFailed as exc:
                self._remove_new([move], log)
                return Ran(f"edge: {exc}", self._restart_old(move, log), True)
            through = self._check_edge([move], log)
            if not all(c.passed for c in through):
                self._restart_old(move, log)
                how = self._switch_back(after, before, [move], log)
                return Ran(_failure([c for c in through if not c.passed], "through the edge"), how, True, through)
            if move.live is not None:
                self._quietly(log, "remove", move.service, f"{move.live.colour}: the old container", "down",
                              move.live.colour)  # fmt: skip
            results += through
        self._remove_leaving(self.state, log)
        if not self.moving:
            self._switch(self.state, [], log)
        return Ran(checks=results)

    # --- steps -----------------------------------------------------------------------------------------

    def _project(self, service: str, colour: str) -> ColourProject:
        return ColourProject(self.cli, self.work_dir, self.target.name, service, colour)

    def _stage(self, move: Move, log: StepLog) -> ServiceCheck:
        """Start ``move``'s new colour and check it directly: health, golden requests, p95."""
        assert move.placed is not None
        port = self.ports[move.service]
        container_port = int(self.checks[move.service]["container_port"])
        definition = colour_definition(self.project, move.service, move.colour, self.bind, port, container_port)
        try:
            with log.step("start", move.service, f"{move.colour} on {self.bind}:{port}"):
                self._project(move.service, move.colour).up(definition)
        except ApplyFailed as exc:
            return ServiceCheck(move.service, f"not started: docker compose up: {exc}", port=port)
        with log.step("check", move.service, f"{move.colour}, directly") as step:
            name = colour_project_name(self.target.name, move.service, move.colour)
            alive = container_alive(self.client, name)
            check = check_service(self.engine.probe_host, port, move.service, self.checks[move.service], alive)
            step["ok"], step["detail"] = check.passed, _said(check, step["detail"])
        self.emit(Event("deploy.check", f"{self.target.name}: {move.service} ({move.colour}, new): {_verdict(check)}"))
        return check

    def _switch(self, before: EdgeState, moves: Sequence[Move], log: StepLog) -> EdgeState:
        after = before
        for move in moves:
            assert move.placed is not None
            port = int(self.checks[move.service]["port"])
            route = before.routes.get(move.service) or Route(port, move.colour, {}, self.target.hold_s)
            route = Route(port, route.live, route.upstreams, self.target.hold_s)
            address = upstream_address(self.bind, self.ports[move.service])
            after = after.with_route(move.service, route.switched(move.colour, address))
        for service, route in after.routes.items():  # a port moved in the catalog: the listener moves
            if service in self.checks and route.port != int(self.checks[service]["port"]):
                after = after.with_route(service, Route(int(self.checks[service]["port"]), route.live,
                                                        route.upstreams, route.hold_s))  # fmt: skip
        after = EdgeState(after.routes, self.target.drain_s)
        detail = ", ".join(f"{m.service} -> {m.colour}" for m in moves) or "routes"
        with log.step("switch", detail=detail):
            if self.legacy:
                with log.step("migrate", detail="the in-place containers make way for the edge"):
                    ComposeApplier(self.cli, self.client, self.work_dir).down()
                    self.legacy = []
            container = self.edge.container()
            if container is None or container.status != "running" or self.edge.image() != self.proxy_image:
                self.edge.start(self.proxy_image, after)
            else:  # reloaded once where the plan found it serving something else than its files say
                self.edge.apply(before, after, reload=not self.view.in_sync)
            self.view.in_sync = True
        self.state = after
        return after

    def _check_edge(self, moves: Sequence[Move], log: StepLog) -> list[ServiceCheck]:
        def one(move: Move) -> ServiceCheck:
            port = int(self.checks[move.service]["port"])
            with log.step("check", move.service, "through the edge") as step:
                check = check_service(self.engine.probe_host, port, move.service, self.checks[move.service])
                step["ok"], step["detail"] = check.passed, _said(check, step["detail"])
            where = f"{self.engine.probe_host}:{port}"
            self.emit(Event("deploy.check", f"{self.target.name}: {move.service} at {where}: {_verdict(check)}"))
            return check

        with ThreadPoolExecutor(max_workers=max(1, min(4, len(moves)))) as pool:
            return list(pool.map(one, moves))

    def _switch_back(self, after: EdgeState, before: EdgeState, moves: Sequence[Move], log: StepLog) -> str:
        olds = [m for m in moves if m.live is not None]
        restored = before
        for move in moves:
            if move.live is None:  # nothing to go back to: the route goes
                restored = restored.with_route(move.service, None)
        restored = EdgeState(restored.routes, self.target.drain_s)
        try:
            with log.step("switch back", detail=", ".join(f"{m.service} -> {m.live.colour}" for m in olds if m.live)):
                self.edge.apply(after, restored)
            self.state = restored
        except ApplyFailed as exc:
            return f"switching back FAILED too ({exc}); the target needs attention"
        self._remove_new(moves, log)
        return "switched back to the old containers (still running); the new ones were removed"

    def _restart_old(self, move: Move, log: StepLog) -> str:
        if move.live is None:
            return "nothing ran before"
        why = f"{move.live.colour}: the old container, for the held requests"
        if not self._quietly(log, "restart", move.service, why, "start", move.live.colour):
            return f"starting {move.service}'s old container again FAILED; the target needs attention"
        route = self.state.routes.get(move.service)
        if route is not None:  # the held requests go to it again (where the switch did not move them)
            try:
                self.edge.point(move.service, move.live.colour, route.upstream(move.live.colour))
            except ApplyFailed:
                return f"started {move.service}'s old container again, but the edge could not point at it"
        return f"started {move.service}'s old container again; held requests went to it"

    def _remove_new(self, moves: Sequence[Move], log: StepLog) -> None:
        for move in moves:
            self._quietly(log, "remove", move.service, f"{move.colour}: the new container", "down", move.colour)

    def _drain(self, moves: Sequence[Move], log: StepLog) -> None:
        olds = [(m.service, m.live.colour) for m in moves if m.live is not None]
        if not olds:
            return
        with log.step("drain", detail=f"up to {self.target.drain_s:g}s") as step:
            took = self.edge.wait_drained(olds, self.target.drain_s)
            step["detail"] = f"old connections done after {took:.1f}s (at most {self.target.drain_s:g}s)"
        for service, colour in olds:
            self._quietly(log, "remove", service, f"{colour}: the old container", "down", colour)

    def _remove_leaving(self, state: EdgeState, log: StepLog) -> None:
        leaving = self.leaving
        if not leaving:
            return
        after = state
        for move in leaving:
            after = after.with_route(move.service, None)
        try:
            with log.step("switch", detail="routes of services the target no longer runs"):
                self.edge.apply(state, after)
            self.state = after
        except ApplyFailed:
            return  # the step says why; the services stay, served, until the next deploy
        for move in leaving:
            for colour in self.containers.get(move.service, {}):
                self._quietly(log, "remove", move.service, f"{colour}: no longer part of the target", "down", colour)

    def _quietly(self, log: StepLog, step: str, service: str, detail: str, action: str, colour: str) -> bool:
        """``docker compose <action>`` of one colour as a step; a failure is the step's, not the deploy's
        (it is cleaning up, or the caller decides): False then."""
        project = self._project(service, colour)
        try:
            with log.step(step, service, detail):
                {"down": project.down, "stop": project.stop, "start": project.start}[action]()
            return True
        except ApplyFailed:
            return False

    def _kept(self) -> str:
        return "the old containers kept serving, untouched; the new ones were removed"


def container_alive(client: Any, project: str) -> Alive:
    """A check that raises Crashed once the project's container exited or is restarting after a crash."""

    def check() -> None:
        found = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
        if not found:
            raise Crashed(-1)
        attrs = found[0].attrs
        state = attrs.get("State") or {}
        if state.get("Status") in ("exited", "dead") or state.get("Restarting") or int(attrs.get("RestartCount", 0)):
            raise Crashed(int(state.get("ExitCode", -1)))

    return check


def _failure(failed: Sequence[ServiceCheck], where: str) -> str:
    return "; ".join(f"{c.short}, {where}" for c in failed)


def _verdict(check: ServiceCheck) -> str:
    return f"ok (p95 {check.p95_ms} ms)" if check.passed else f"FAIL {check.reason}"


def _said(check: ServiceCheck, detail: str) -> str:
    said = f"p95 {check.p95_ms} ms" if check.passed else check.reason[:200]
    return f"{detail}: {said}" if detail else said
