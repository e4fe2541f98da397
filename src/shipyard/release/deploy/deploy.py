"""Deploy one target: compute the plan (touching nothing; ``--dry-run`` stops there), then, under the
target's lock, apply it with the target's strategy, every step recorded in the deployment ledger."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ...build.base import LocalBases
from ...config.keys import machine_state_dir
from ...config.profiles import Profile
from ...config.project import cache_dir
from ...config.targets import Target
from ...errors import ConfigError, DeployFailed, EngineError
from ...events import Emit, Event, discard
from ...oci.client import RegistryClient
from ...runner import Runner
from ..channels.ledger import actor
from ..engine import TargetEngine, check_secrets, connect_engine, has_gpu, require_nvidia_runtime, resolve_engine
from ..model_volumes import ensure_models, model_fetch_image
from .blue_green import EdgeStrategy
from .compose import RELEASE_LABEL, Placed, compose_project
from .compose_apply import ComposeApplier
from .deployments import Deployment, load_deployments, save_deployments
from .docker_cli import ApplyFailed, DockerCli, Running
from .edge_plan import Move
from .in_place import InPlaceStrategy
from .live_checks import ServiceCheck
from .lock import lock_file, target_lock
from .steps import StepLog
from .swarm_apply import SwarmApplier, stack_project

Outcome = Literal["deployed", "unchanged", "rolled-back", "stopped", "planned", "not reached"]


@dataclass(frozen=True)
class Change:
    service: str
    before: str | None  # the image it runs now (None: not running)
    after: str | None  # the image it is to run (None: the project no longer has it)
    reconfigured: bool = False  # same image, other settings (limits, ports, secrets) than the last deploy's

    @property
    def action(self) -> str:
        if self.before == self.after:
            return "config" if self.reconfigured else "noop"
        return "create" if self.before is None else "remove" if self.after is None else "update"


@dataclass
class DeployOutcome:
    target: str
    before: str  # the release that ran before ("-": nothing)
    after: str  # the release that runs now
    outcome: Outcome
    health: str = "-"
    p95_ms: float | None = None
    seconds: float = 0.0
    reason: str = ""  # for a failure: why, and how the rollback went
    line: str = ""  # the outcome in one line

    @property
    def failed(self) -> bool:
        return self.outcome in ("rolled-back", "stopped")


@dataclass(frozen=True)
class DeployContext:
    """What every target's deploy shares: the registry (ledgers), the work directory (the applied files)."""

    registry: RegistryClient
    namespace: str
    work_dir: Path
    runner: Runner
    emit: Emit
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    lock_dir: Path = field(default_factory=lambda: machine_state_dir() / "locks")
    lock_wait_s: float = 0.0  # how long a deploy waits for another one of the same target

    def fetch_image(self) -> str:
        """The image of the one-shot container that fills model volumes (the local Python base), by digest."""
        return model_fetch_image(self.registry, self.runner, self.emit)

    def proxy_image(self, target: Target, *, build: bool) -> str:
        """The edge's image by digest: ``local:NAME`` built here (once per registry) and pushed; with
        ``build`` False, only looked up (a plan builds nothing)."""
        if not target.proxy_image.startswith("local:"):
            return target.proxy_image
        runner = self.runner if build else Runner(dry_run=True)
        bases = LocalBases(self.registry.target, self.registry, runner, cache_dir(), self.emit if build else discard)
        return bases.ensure(target.proxy_image.removeprefix("local:"))


def checks_of(target: Target, placed: Sequence[Placed]) -> dict[str, dict[str, Any]]:
    """Each service's live check: the host port it is published on, its probes, how many golden requests."""
    return {
        p.service: {
            "port": target.ports.get(p.service, p.port),
            "container_port": p.port,
            "probe": dict(p.probe),
            "requests": p.requests,
        }
        for p in placed
    }


def plan_changes(running: Sequence[Running], images: Mapping[str, str]) -> list[Change]:
    """Service by service: from the image its containers run to the one it is to run. A service whose
    containers are not all running (and healthy, where they have a healthcheck) on that image moves."""
    now: dict[str, str | None] = {}
    for item in running:
        settled = item.status == "running" and item.health in ("", "healthy")
        current = item.image if settled else None
        now[item.service] = current if now.get(item.service, current) == current else None
    changes = [Change(service, now.get(service), image) for service, image in images.items()]
    changes += [Change(service, before, None) for service, before in now.items() if service not in images]
    return changes


def settings_of(project: Mapping[str, Any]) -> dict[str, Any]:
    """Each service's definition but the release it came from (a label): the same digests deployed under
    another release's name are what already runs, while other limits, ports or secrets are a change."""
    settings = {}
    for name, service in (project.get("services") or {}).items():
        labels = {k: v for k, v in (service.get("labels") or {}).items() if k != RELEASE_LABEL}
        deploy = dict(service.get("deploy") or {})
        if "labels" in deploy:
            deploy["labels"] = {k: v for k, v in deploy["labels"].items() if k != RELEASE_LABEL}
        settings[name] = json.loads(json.dumps({**service, "labels": labels, "deploy": deploy}, sort_keys=True))
    return settings


def check_swarm(target: Target, profile: Profile, engine: TargetEngine, client: Any) -> None:
    """A swarm target's engine is a manager, and its profile asks for nothing Swarm cannot give."""
    if has_gpu(profile.hardware):
        raise ConfigError(
            f"shipyard.toml: targets.{target.name}.mode: a swarm stack cannot reserve the NVIDIA GPUs profile "
            f'{profile.name} needs; use mode = "compose" for GPU hosts'
        )
    swarm = client.info().get("Swarm") or {}
    if not swarm.get("ControlAvailable"):
        raise EngineError(
            f"target {target.name}: engine {engine.url} is not a swarm manager (swarm state: "
            f'{swarm.get("LocalNodeState") or "inactive"}); run `docker swarm init` there, or set mode = "compose"'
        )


class TargetDeploy:
    """One target: the checks that come before any change, the plan, then :meth:`apply`."""

    def __init__(self, ctx: DeployContext, target: Target, profile: Profile) -> None:
        """The checks that need no digest: secrets, the engine, its GPU runtime, a swarm manager."""
        self.ctx = ctx
        self.target = target
        self.profile = profile
        check_secrets(target, ctx.environ)
        self.engine: TargetEngine = resolve_engine(target)
        self.client = connect_engine(self.engine)
        try:
            if has_gpu(profile.hardware):
                require_nvidia_runtime(self.client, f"target {target.name}", self.engine.url)
            cli = DockerCli(self.engine, ctx.runner, ctx.environ, ctx.emit)
            self.edge: EdgeStrategy | None = None
            self.in_place: InPlaceStrategy | None = None
            if target.mode == "swarm":
                check_swarm(target, profile, self.engine, self.client)
                swarm = SwarmApplier(cli, self.client, ctx.work_dir, publish=target.publish)
                self.in_place = InPlaceStrategy(swarm, self.engine, "docker stack deploy", ctx.emit, "swarm")
            elif target.has_edge:
                self.edge = EdgeStrategy(target, self.engine, self.client, cli, ctx.work_dir, ctx.emit)
            else:
                compose = ComposeApplier(cli, self.client, ctx.work_dir)
                self.in_place = InPlaceStrategy(compose, self.engine, "docker compose up", ctx.emit)
        except BaseException:
            self.client.close()
            raise

    @property
    def strategy(self) -> str:
        return self.edge.name if self.edge is not None else self.in_place.name if self.in_place else "?"

    def plan(self, placed: Sequence[Placed], source: str) -> TargetDeploy:
        """What must change, from what the engine runs now and the target's ledger; nothing is touched."""
        self.source = source
        self.placed = list(placed)
        self.release = max((p.release for p in self.placed), default="?")
        self.project = compose_project(self.target, self.profile, self.placed, source)
        if self.target.mode == "swarm":
            self.project = stack_project(self.project, self.profile.runtime, self.target.publish)
        self.images = {p.service: p.ref for p in self.placed}
        self.checks = checks_of(self.target, self.placed)
        self.ledger = load_deployments(self.ctx.registry, self.ctx.namespace, self.target.name)
        good = self.ledger.last_good
        last = self.ledger.last
        self.unfinished = last if last is not None and last.state == "in-progress" else None
        self.before = good.release if good is not None else "-"
        if self.edge is not None:
            self.edge.proxy_image = self.ctx.proxy_image(self.target, build=False)
            moves = self.edge.plan(self.project, self.placed, self.checks)
            self.changes = [_change_of(m) for m in moves]
        else:
            assert self.in_place is not None
            was = settings_of(good.project) if good is not None else {}
            now = settings_of(self.project)
            self.changes = [
                replace(c, reconfigured=c.after is not None and was.get(c.service) != now.get(c.service))
                for c in plan_changes(self.in_place.applier.running(), self.images)
            ]
        return self

    @property
    def noop(self) -> bool:
        if self.unfinished is not None:
            return False
        if self.edge is not None:
            return self.edge.nothing_to_do
        return all(c.action == "noop" for c in self.changes)

    def plan_lines(self) -> list[str]:
        head = (
            f"{self.target.name} ({self.engine.url}): {self.before} -> {self.release} ({self.source}), {self.strategy}"
        )
        lines = [head]
        if self.unfinished is not None:
            lines.append(f"  finishes the deploy of {self.unfinished.release} interrupted at {self.unfinished.at}")
        colours = {m.service: m for m in self.edge.moves} if self.edge is not None else {}
        for change in self.changes:
            before, after = _short(change.before), _short(change.after)
            move = colours.get(change.service)
            where = ""
            if move is not None and change.action != "noop":
                was = move.live.colour if move.live is not None else "-"
                where = f" ({was} -> {move.colour or '-'})"
            lines.append(f"  {change.action:<6} {change.service}: {before} -> {after}{where}")
        for model in {m.volume: m for p in self.placed for m in p.models}.values():
            lines.append(
                f"  model  {model.name}: {model.digest[:19]} in volume {model.volume}, read-only at {model.mount}"
            )
        if self.edge is not None:
            lines += self.edge.notes()
        return lines

    def apply(self) -> DeployOutcome:
        """Under the target's lock: plan again (another deploy may have just finished), then deploy."""
        path = lock_file(self.ctx.lock_dir, self.target.name, self.engine.url)
        with target_lock(path, self.target.name, self.ctx.lock_wait_s, who=f"{actor()} ({self.source})"):
            self.plan(self.placed, self.source)
            return self._apply()

    def _apply(self) -> DeployOutcome:
        name = self.target.name
        if self.noop:
            runs = (
                self.release if self.before in (self.release, "-") else f"{self.release}'s digests (as {self.before})"
            )
            line = f"{name}: already runs {runs} ({len(self.images)} service(s)); nothing to change"
            self.ctx.emit(Event("deploy.done", line))
            return DeployOutcome(name, self.before, self.release, "unchanged", "healthy", line=line)
        started = time.monotonic()
        log = StepLog(name, self.ctx.emit)
        if self.edge is not None:  # before the ledger entry: a pull or a port that fails changes nothing
            self.edge.proxy_image = self.ctx.proxy_image(self.target, build=True)
            try:
                self.edge.prepare(log)
            except ApplyFailed as exc:
                raise DeployFailed(f"{name}: {exc}; nothing was changed") from None
        self._place_models(log)
        if self.unfinished is not None:
            self.unfinished.state = "interrupted"
            self.unfinished.reason = "the run was stopped before it finished; the next deploy took over"
        previous = {c.service: c.before for c in self.changes if c.before is not None}
        entry = Deployment(
            self.release, self.source, self.images, previous, self.project, self.checks, strategy=self.strategy
        )
        entry.steps = log.steps
        entry.models = {m.name: m.ref for p in self.placed for m in p.models}
        log.save = self._save
        self.ledger.entries.append(entry)
        self._save()
        self.ctx.emit(Event("deploy.started", f"{name}: deploying {self.release} ({self.source}) to {self.engine.url}"))
        if self.edge is not None:
            ran = self.edge.run(log)
            failure, checks = ran.failure, ran.checks
        else:
            assert self.in_place is not None
            failure, checks = self.in_place.bring_up(self.project, entry.checks, log)
        entry.seconds = round(time.monotonic() - started, 1)
        if not failure:
            entry.state, entry.p95_ms = "complete", _p95(checks)
            self._save()
            count = len(self.images)
            line = f"{name}: {self.release} deployed, {count} service(s) healthy and answering ({entry.seconds}s)"
            self.ctx.emit(Event("deploy.done", line))
            return DeployOutcome(
                name, self.before, self.release, "deployed", "healthy", entry.p95_ms, entry.seconds, line=line
            )
        if self.edge is not None:
            good = self.ledger.last_good
            restored = ran.restored and bool(previous)
            how = ran.how if previous else f"first deploy of {name}: {ran.how}"
            return self._failed(entry, failure, how, restored, good.release if good and restored else "-", started)
        how, healthy = self.in_place.recover(self.ledger.last_good, log) if self.in_place else ("", False)
        good = self.ledger.last_good
        return self._failed(entry, failure, how, healthy, good.release if good is not None else "-", started)

    def _place_models(self, log: StepLog) -> None:
        """Every model of the release in its volume on the target, each file's digest checked, before the
        ledger entry and before anything starts: a model that cannot be placed changes nothing."""
        models = [m for p in self.placed for m in p.models]
        if not models:
            return
        try:
            with log.step("models", detail=f"{len({m.volume for m in models})} model(s)"):
                ensure_models(self.client, models, self.ctx.fetch_image(), self.ctx.emit, self.target.name)
        except EngineError as exc:
            raise DeployFailed(f"{exc}; nothing was changed") from None

    def _failed(
        self, entry: Deployment, failure: str, how: str, healthy: bool, after: str, started: float
    ) -> DeployOutcome:
        name = self.target.name
        back = after != "-"
        entry.state = "rolled-back" if back else "failed"
        entry.reason, entry.seconds = f"{failure}; {how}", round(time.monotonic() - started, 1)
        self._save()
        line = f"{name}: {self.release} failed ({failure}); {how}"
        self.ctx.emit(Event("deploy.failed", line))
        outcome: Outcome = "rolled-back" if back else "stopped"
        health = "healthy" if back and healthy else "-"
        return DeployOutcome(name, self.before, after, outcome, health, None, entry.seconds, entry.reason, line)

    def _save(self) -> None:
        save_deployments(self.ctx.registry, self.ctx.namespace, self.ledger)

    def close(self) -> None:
        self.client.close()


def _change_of(move: Move) -> Change:
    before = move.live.image if move.live is not None else None
    after = move.placed.ref if move.placed is not None else None
    moved = move.live is not None and move.placed is not None and move.colour != move.live.colour
    return Change(move.service, before, after, reconfigured=moved and before == after)


def _short(ref: str | None) -> str:
    if ref is None:
        return "(none)"
    repository, _, digest = ref.partition("@")
    return f"{repository.rsplit('/', 1)[-1]}@{digest[7:19]}" if digest else ref[-40:]


def _p95(checks: Sequence[ServiceCheck]) -> float | None:
    values = [c.p95_ms for c in checks if c.p95_ms is not None]
    return max(values) if values else None
