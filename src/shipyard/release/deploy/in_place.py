"""In place: the whole project applied through the engine, checked live, the previous one re-applied on failure.

Compose recreates each changed service's containers on their own ports (``strategy = "in-place"``: each
is down while it restarts, and there is no edge); a Swarm stack updates its tasks ``start-first`` itself.
Either way shipyard then sends the golden requests to the live services, and on any failure re-applies
the previous good deployment's project (a first deploy has nothing to go back to: what it started is
stopped).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ...events import Emit, Event
from ..engine import TargetEngine
from .deployments import Deployment
from .docker_cli import ApplyFailed, Running
from .live_checks import ServiceCheck, check_target
from .steps import StepLog

WAIT_MARGIN_S = 30.0  # beyond the slowest service's ready timeout, for Compose's --wait


class Applier(Protocol):
    """How a project reaches an engine: Compose per host, or a Swarm stack."""

    def running(self) -> list[Running]: ...
    def up(self, project: Mapping[str, Any], timeout_s: float) -> None: ...
    def live_ports(self, service: str, port: int, container_port: int) -> list[int]: ...
    def down(self) -> None: ...


class InPlaceStrategy:
    def __init__(self, applier: Applier, engine: TargetEngine, how: str, emit: Emit, name: str = "in-place") -> None:
        self.applier = applier
        self.engine = engine
        self.how = how  # "docker compose up" or "docker stack deploy"
        self.emit = emit
        self.name = name

    def bring_up(
        self, project: Mapping[str, Any], checks: Mapping[str, Mapping[str, Any]], log: StepLog
    ) -> tuple[str, list[ServiceCheck]]:
        """Apply ``project`` and check it live; the failure in a few words ("" when it answers right)."""
        timeout = max(float(c["probe"]["ready_timeout_s"]) for c in checks.values()) + WAIT_MARGIN_S
        try:
            with log.step("apply", detail=self.how):
                self.applier.up(project, timeout)
        except ApplyFailed as exc:
            return f"{self.how}: {exc}", []
        ports = {
            service: self.applier.live_ports(service, int(c["port"]), int(c.get("container_port", c["port"])))
            for service, c in checks.items()
        }
        with log.step("check", detail="the live services") as step:
            results = check_target(self.engine.probe_host, checks, ports)
            step["ok"] = all(c.passed for c in results)
        for check in results:
            outcome = "ok" if check.passed else f"FAIL {check.reason}"
            where = f"{self.engine.probe_host}:{check.port}"
            message = f"{self.engine.target}: {check.service} at {where}: {outcome} (p95 {check.p95_ms} ms)"
            self.emit(Event("deploy.check", message))
        failed = [c for c in results if not c.passed]
        return ("; ".join(c.short for c in failed), results) if failed else ("", results)

    def recover(self, good: Deployment | None, log: StepLog) -> tuple[str, bool]:
        """After a failure: the previous good deployment re-applied, or (first deploy) what started
        stopped. How it went in words, and whether the target answers again."""
        name = self.engine.target
        if good is None:
            try:
                with log.step("stop", detail="a first deploy: what it started"):
                    self.applier.down()
                return f"first deploy of {name}: stopped what it started", False
            except ApplyFailed as exc:
                return f"first deploy of {name}: stopping what it started failed too ({exc})", False
        self.emit(Event("deploy.rollback", f"{name}: rolling back to {good.release}"))
        again, _ = self.bring_up(good.project, good.checks, log)
        how = f"rolled back to {good.release} ({'healthy' if not again else 'NOT healthy: ' + again})"
        if again:
            how += "; the target needs attention"
        return how, not again
