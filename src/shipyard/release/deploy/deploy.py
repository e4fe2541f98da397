"""Deploy one target: compute the plan, apply it through the engine, check the live services, roll back.

The plan comes first and touches nothing (which service moves from which image to which, found on the
engine itself); ``--dry-run`` stops there, and a target that already runs the plan is left alone.
Applying it writes an ``in-progress`` entry to the target's deployment ledger, brings the project up,
then sends the golden requests to the live services. Any failure (Compose's, a service not healthy in
time, a wrong answer, a missed SLO) re-applies the previous good deployment, checks that it answers,
and the entry says ``rolled-back``; a first deploy has nothing to go back to, so what it started is
stopped (``failed``). A run killed halfway leaves ``in-progress``: the next run finishes the job.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from ...config.profiles import Profile
from ...config.targets import Target
from ...errors import ConfigError, EngineError
from ...events import Emit, Event
from ...oci.client import RegistryClient
from ...runner import Runner
from ..engine import has_gpu, require_nvidia_runtime
from .compose import RELEASE_LABEL, Placed, compose_project
from .compose_apply import ComposeApplier
from .deployments import Deployment, load_deployments, save_deployments
from .docker_cli import ApplyFailed, DockerCli, Running
from .live import ServiceCheck, check_target
from .swarm_apply import SwarmApplier, stack_project
from ..engine import TargetEngine, check_secrets, connect_engine, resolve_engine

Outcome = Literal["deployed", "unchanged", "rolled-back", "stopped", "planned", "not reached"]
WAIT_MARGIN_S = 30.0  # beyond the slowest service's ready timeout, for Compose's --wait


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


class Applier(Protocol):
    """How a project reaches an engine: Compose per host, or a Swarm stack."""

    def running(self) -> list[Running]: ...
    def up(self, project: Mapping[str, Any], timeout_s: float) -> None: ...
    def live_ports(self, service: str, port: int, container_port: int) -> list[int]: ...
    def down(self) -> None: ...


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
            self.applier: Applier
            cli = DockerCli(self.engine, ctx.runner, ctx.environ, ctx.emit)
            if target.mode == "swarm":
                check_swarm(target, profile, self.engine, self.client)
                self.applier = SwarmApplier(cli, self.client, ctx.work_dir, publish=target.publish)
            else:
                self.applier = ComposeApplier(cli, self.client, ctx.work_dir)
        except BaseException:
            self.client.close()
            raise

    def plan(self, placed: Sequence[Placed], source: str) -> TargetDeploy:
        """What must change, from what the engine runs now and the target's ledger; nothing is touched."""
        self.source = source
        self.placed = list(placed)
        self.release = max((p.release for p in self.placed), default="?")
        self.project = compose_project(self.target, self.profile, self.placed, source)
        if self.target.mode == "swarm":
            self.project = stack_project(self.project, self.profile.runtime, self.target.publish)
        self.images = {p.service: p.ref for p in self.placed}
        self.ledger = load_deployments(self.ctx.registry, self.ctx.namespace, self.target.name)
        good = self.ledger.last_good
        was = settings_of(good.project) if good is not None else {}
        now = settings_of(self.project)
        self.changes = [
            replace(c, reconfigured=c.after is not None and was.get(c.service) != now.get(c.service))
            for c in plan_changes(self.applier.running(), self.images)
        ]
        last = self.ledger.last
        self.unfinished = last if last is not None and last.state == "in-progress" else None
        self.before = good.release if good is not None else "-"
        return self

    @property
    def noop(self) -> bool:
        return self.unfinished is None and all(c.action == "noop" for c in self.changes)

    def plan_lines(self) -> list[str]:
        lines = [f"{self.target.name} ({self.engine.url}): {self.before} -> {self.release} ({self.source})"]
        if self.unfinished is not None:
            lines.append(f"  finishes the deploy of {self.unfinished.release} interrupted at {self.unfinished.at}")
        for change in self.changes:
            before, after = _short(change.before), _short(change.after)
            lines.append(f"  {change.action:<6} {change.service}: {before} -> {after}")
        return lines

    def apply(self) -> DeployOutcome:
        name = self.target.name
        if self.noop:
            runs = (
                self.release if self.before in (self.release, "-") else f"{self.release}'s digests (as {self.before})"
            )
            line = f"{name}: already runs {runs} ({len(self.images)} service(s)); nothing to change"
            self.ctx.emit(Event("deploy.done", line))
            return DeployOutcome(name, self.before, self.release, "unchanged", "healthy", line=line)
        started = time.monotonic()
        if self.unfinished is not None:
            self.unfinished.state = "interrupted"
            self.unfinished.reason = "the run was stopped before it finished; the next deploy took over"
        previous = {c.service: c.before for c in self.changes if c.before is not None}
        entry = Deployment(
            self.release, self.source, self.images, previous, self.project, checks_of(self.target, self.placed)
        )
        self.ledger.entries.append(entry)
        self._save()
        self.ctx.emit(Event("deploy.started", f"{name}: deploying {self.release} ({self.source}) to {self.engine.url}"))
        failure, checks = self._bring_up(self.project, entry.checks)
        if not failure:
            entry.state, entry.seconds = "complete", round(time.monotonic() - started, 1)
            self._save()
            count = len(self.images)
            line = f"{name}: {self.release} deployed, {count} service(s) healthy and answering ({entry.seconds}s)"
            self.ctx.emit(Event("deploy.done", line))
            return DeployOutcome(
                name, self.before, self.release, "deployed", "healthy", _p95(checks), entry.seconds, line=line
            )
        return self._recover(entry, failure, started)

    def _bring_up(
        self, project: Mapping[str, Any], checks: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, list[ServiceCheck]]:
        """Apply ``project`` and check it live; the failure in a few words ("" when it answers right)."""
        timeout = max(float(c["probe"]["ready_timeout_s"]) for c in checks.values()) + WAIT_MARGIN_S
        how = "docker stack deploy" if self.target.mode == "swarm" else "docker compose up"
        started = time.monotonic()
        try:
            self.applier.up(project, timeout)
        except ApplyFailed as exc:
            return f"{how}: {exc}", []
        self.ctx.emit(Event("deploy.up", f"{self.target.name}: {how}: healthy in {time.monotonic() - started:.1f}s"))
        ports = {
            service: self.applier.live_ports(service, int(c["port"]), int(c.get("container_port", c["port"])))
            for service, c in checks.items()
        }
        results = check_target(self.engine.probe_host, checks, ports)
        for check in results:
            outcome = "ok" if check.passed else f"FAIL {check.reason}"
            where = f"{self.engine.probe_host}:{check.port}"
            self.ctx.emit(
                Event(
                    "deploy.check", f"{self.target.name}: {check.service} at {where}: {outcome} (p95 {check.p95_ms} ms)"
                )
            )
        failed = [c for c in results if not c.passed]
        return ("; ".join(c.short for c in failed), results) if failed else ("", results)

    def _recover(self, entry: Deployment, failure: str, started: float) -> DeployOutcome:
        name = self.target.name
        good = self.ledger.last_good
        outcome: Outcome
        if good is None:
            try:
                self.applier.down()
                how = f"first deploy of {name}: stopped what it started"
            except ApplyFailed as exc:
                how = f"first deploy of {name}: stopping what it started failed too ({exc})"
            entry.state, outcome, after = "failed", "stopped", "-"
        else:
            self.ctx.emit(
                Event("deploy.rollback", f"{name}: {self.release} failed ({failure}); rolling back to {good.release}")
            )
            again, _ = self._bring_up(good.project, good.checks)
            how = f"rolled back to {good.release} ({'healthy' if not again else 'NOT healthy: ' + again})"
            if again:
                how += "; the target needs attention"
            entry.state, outcome, after = "rolled-back", "rolled-back", good.release
        entry.reason, entry.seconds = f"{failure}; {how}", round(time.monotonic() - started, 1)
        self._save()
        line = f"{name}: {self.release} failed ({failure}); {how}"
        self.ctx.emit(Event("deploy.failed", line))
        health = "healthy" if outcome == "rolled-back" and "NOT healthy" not in how else "-"
        return DeployOutcome(name, self.before, after, outcome, health, None, entry.seconds, entry.reason, line)

    def _save(self) -> None:
        save_deployments(self.ctx.registry, self.ctx.namespace, self.ledger)

    def close(self) -> None:
        self.client.close()


def _short(ref: str | None) -> str:
    if ref is None:
        return "(none)"
    repository, _, digest = ref.partition("@")
    return f"{repository.rsplit('/', 1)[-1]}@{digest[7:19]}" if digest else ref[-40:]


def _p95(checks: Sequence[ServiceCheck]) -> float | None:
    values = [c.p95_ms for c in checks if c.p95_ms is not None]
    return max(values) if values else None
