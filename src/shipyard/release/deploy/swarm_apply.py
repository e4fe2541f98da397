"""Applying a target's project as a Docker Swarm stack, and reading back what its services run.

The same services as the Compose project, in the form ``docker stack deploy`` takes: limits under
``deploy.resources``, ``/tmp`` as a tmpfs mount, ``replicas`` from the profile's ``runtime``, and an
``update_config`` that starts a new task before stopping an old one (``start-first``), watches it for
``MONITOR`` and lets Swarm roll the service back itself when the new tasks fail. shipyard then waits
until every service has converged: each task running (healthy, where the image has a healthcheck) on
the new image, or Swarm's own rollback, reported with Swarm's message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ...config.profiles import RuntimeSettings
from ...state import make_dirs
from ..gates.probes import NotReady, wait_until_ready
from .docker_cli import ApplyFailed, DockerCli, Running

STACK_LABEL = "com.docker.stack.namespace"
MONITOR = "15s"  # how long Swarm watches a new task before the update moves on
ROLLED_BACK = ("rollback_completed", "rollback_paused")
Sleep = Callable[[float], None]


def stack_project(compose: Mapping[str, Any], runtime: RuntimeSettings, publish: str = "ingress") -> dict[str, Any]:
    """The Compose project rewritten for ``docker stack deploy`` (which ignores ``restart``, ``tmpfs``,
    ``security_opt`` and the per-container limits)."""
    services = {}
    for name, service in compose["services"].items():
        swarm = {k: v for k, v in service.items() if k not in ("restart", "tmpfs", "mem_limit", "cpus", "pids_limit")}
        swarm.pop("security_opt", None)  # Swarm sets no-new-privileges only engine-wide
        swarm["volumes"] = [*service.get("volumes", []), {"type": "tmpfs", "target": "/tmp"}]
        swarm["ports"] = [_published(spec, publish) for spec in service.get("ports", [])]
        swarm["deploy"] = {
            "replicas": runtime.replicas,
            "resources": {"limits": {"memory": runtime.memory, "cpus": str(runtime.cpus), "pids": runtime.pids}},
            "restart_policy": {"condition": "any", "delay": "2s"},
            "update_config": {
                "parallelism": 1,
                "order": "start-first",
                "failure_action": "rollback",
                "monitor": MONITOR,
                "delay": "1s",
            },
            "rollback_config": {"parallelism": 0, "order": "start-first"},
            "labels": dict(service.get("labels", {})),
        }
        services[name] = swarm
    return {**{k: v for k, v in compose.items() if k != "name"}, "services": services}


def _instant(text: str) -> datetime | None:
    """An engine timestamp (RFC 3339 with nanoseconds) to the microsecond; None when there is none."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        return None
    whole, fraction, zone = match.groups()
    stamp = f"{whole}.{(fraction or '0')[:6].ljust(6, '0')}{'+00:00' if zone == 'Z' else zone}"
    return datetime.fromisoformat(stamp)


def _published(spec: str, publish: str) -> dict[str, Any]:
    """``host:container`` as Swarm's long form. In ``host`` mode each task gets a port of its node chosen by
    the engine: a start-first update's new task must not wait for the old one's port."""
    host, _, container = spec.partition(":")
    if publish == "host":
        return {"target": int(container), "protocol": "tcp", "mode": "host"}
    return {"target": int(container), "published": int(host), "protocol": "tcp", "mode": "ingress"}


class SwarmApplier:
    def __init__(
        self, cli: DockerCli, client: Any, work_dir: Path, *, publish: str = "ingress", sleep: Sleep = time.sleep
    ) -> None:
        self.cli = cli
        self.client = client
        self.publish = publish
        self.file = work_dir / "deploy" / cli.engine.target / "stack.yaml"
        self.name = f"shipyard-{cli.engine.target}"
        self.sleep = sleep

    def _services(self) -> list[Any]:
        return list(self.client.services.list(filters={"label": f"{STACK_LABEL}={self.name}"}))

    def _short(self, service: Any) -> str:
        return str(service.name).removeprefix(f"{self.name}_")

    def running(self) -> list[Running]:
        found = []
        for service in self._services():
            image = str(service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])
            settled = self._settled(service)
            found.append(Running(self._short(service), image, "running" if settled else "converging", ""))
        return found

    def _settled(self, service: Any) -> bool:
        """Every wanted replica runs the service's image, and no update is under way."""
        state = (service.attrs.get("UpdateStatus") or {}).get("State", "completed")
        if state not in ("completed", *ROLLED_BACK):
            return False
        image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        wanted = int(((service.attrs["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
        tasks = service.tasks(filters={"desired-state": "running"})
        ready = [t for t in tasks if t["Status"]["State"] == "running" and t["Spec"]["ContainerSpec"]["Image"] == image]
        return len(ready) == wanted

    def up(self, project: Mapping[str, Any], timeout_s: float) -> None:
        make_dirs(self.file.parent)
        self.file.write_text(yaml.safe_dump(dict(project), sort_keys=False), encoding="utf-8")
        since = _instant(str(self.client.info().get("SystemTime", "")))  # the engine's clock, not ours
        argv = ["docker", "stack", "deploy", "--compose-file", str(self.file), "--prune"]
        argv += ["--resolve-image", "never", "--detach=true", self.name]
        self.cli.run(argv)
        try:
            wait_until_ready(self._converged(set(project["services"]), since), timeout_s, sleep=self.sleep)
        except NotReady as exc:
            raise ApplyFailed(f"not converged in {timeout_s:.0f}s: {exc}") from None

    def _converged(self, names: set[str], since: datetime | None) -> Callable[[], None]:
        """A check: NotReady until each service runs its new spec on every replica; Swarm's rollback of an
        update this deploy started (after ``since``, on the engine's clock) is a failure, with Swarm's message."""

        def check() -> None:
            services = {self._short(s): s for s in self._services()}
            for name, service in services.items():
                status = service.attrs.get("UpdateStatus") or {}
                started = _instant(str(status.get("StartedAt", "")))
                if status.get("State") in ROLLED_BACK and (since is None or (started is not None and started >= since)):
                    raise ApplyFailed(f"Swarm rolled {name} back: {status.get('Message', 'no message')}")
            waiting = sorted(n for n in names if n not in services or not self._settled(services[n]))
            if waiting:
                raise NotReady("converging: " + ", ".join(waiting))

        return check

    def live_ports(self, service: str, port: int, container_port: int) -> list[int]:
        """Where the live check reaches ``service``: the mesh's ``port``, or in ``host`` mode each running task's."""
        if self.publish != "host":
            return [port]
        found = [s for s in self._services() if self._short(s) == service]
        tasks = found[0].tasks(filters={"desired-state": "running"}) if found else []
        published = {
            int(p["PublishedPort"])
            for t in tasks
            if t["Status"]["State"] == "running"
            for p in (t["Status"].get("PortStatus") or {}).get("Ports", [])
            if int(p.get("TargetPort", 0)) == container_port
        }
        return sorted(published)

    def down(self) -> None:
        self.cli.run(["docker", "stack", "rm", self.name])
