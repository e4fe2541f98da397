"""Applying a target's project as a Docker Swarm stack (start-first updates, Swarm's own rollback), waiting
until every service has converged, and reading back what its tasks run."""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
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
GAVE_UP = (*ROLLED_BACK, "paused")  # update states that end the wait: Swarm stopped the update
FAILED = ("failed", "rejected")  # task states: it ran and exited, or could not start at all
FAILED_TASKS = 3  # tasks of the new spec ending so, in one deploy: it keeps failing, more waiting won't help
CONNECT_S = 1.0  # a TCP connect to a task's port, where the engine does not say which family it is for
Sleep = Callable[[float], None]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
        """A check: NotReady until each service runs its new spec on every replica. Swarm's rollback or pause
        of an update this deploy started (after ``since``, on the engine's clock) is a failure with Swarm's
        message, and so are ``FAILED_TASKS`` tasks of the new spec failed or rejected since then."""

        def check() -> None:
            services = {self._short(s): s for s in self._services()}
            for name, service in services.items():
                _fail_if_given_up(name, service.attrs, since)
            waiting = sorted(n for n in names if n not in services or not self._settled(services[n]))
            for name in waiting:
                if name in services:
                    _fail_if_failing(name, services[name], since)
            if waiting:
                raise NotReady("converging: " + ", ".join(waiting))

        return check

    def live_ports(self, service: str, port: int, container_port: int) -> list[int]:
        """Where the live check reaches ``service``: the mesh's ``port``, or in ``host`` mode one port per
        running task, the one it is published on for the probe host's address family."""
        if self.publish != "host":
            return [port]
        found = [s for s in self._services() if self._short(s) == service]
        tasks = found[0].tasks(filters={"desired-state": "running"}) if found else []
        ports = [self._task_port(t, container_port) for t in tasks if t["Status"]["State"] == "running"]
        return sorted(p for p in ports if p is not None)

    def _task_port(self, task: Mapping[str, Any], container_port: int) -> int | None:
        """The host port the probe host reaches ``task``'s ``container_port`` at; None when it has none.

        Swarm lists a task's published ports without their host address: one per address family the
        engine bound (``0.0.0.0`` and ``[::]``, maybe on different ports). The task's container says
        which is which where this engine runs it; a task on another node: the port that accepts a
        connection at the probe host, else the first."""
        status = task["Status"]
        listed = [
            int(p["PublishedPort"])
            for p in (status.get("PortStatus") or {}).get("Ports", [])
            if int(p.get("TargetPort", 0)) == container_port and p.get("PublishedPort")
        ]
        if len(set(listed)) <= 1:
            return listed[0] if listed else None
        container_id = str((status.get("ContainerStatus") or {}).get("ContainerID", ""))
        host = self.cli.engine.probe_host
        bound = _port_for_family(self._bindings(container_id, container_port), _family(host))
        return bound if bound in listed else _answering(host, listed)

    def _bindings(self, container_id: str, container_port: int) -> list[Mapping[str, Any]]:
        """The container's ``HostIp``/``HostPort`` pairs for ``container_port``; none where it cannot be read."""
        import docker

        if not container_id:
            return []
        try:
            container = self.client.containers.get(container_id)
        except docker.errors.DockerException:  # not on this engine's node, or gone meanwhile
            return []
        ports = (container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
        return list(ports.get(f"{container_port}/tcp") or [])

    def down(self) -> None:
        self.cli.run(["docker", "stack", "rm", self.name])


def _since(stamp: Any, since: datetime | None) -> bool:
    """``stamp`` (an engine timestamp) is at or after ``since``; anything is, without a ``since``."""
    if since is None:
        return True
    instant = _instant(str(stamp or ""))
    return instant is not None and instant >= since


def _fail_if_given_up(name: str, attrs: Mapping[str, Any], since: datetime | None) -> None:
    """ApplyFailed with Swarm's message when it rolled back or paused an update started after ``since``."""
    status = attrs.get("UpdateStatus") or {}
    state = status.get("State")
    if state in GAVE_UP and _since(status.get("StartedAt"), since):
        what = f"paused the update of {name}" if state == "paused" else f"rolled {name} back"
        raise ApplyFailed(f"Swarm {what}: {status.get('Message') or 'no message'}")


def _fail_if_failing(name: str, service: Any, since: datetime | None) -> None:
    """ApplyFailed with the last task's error once ``FAILED_TASKS`` tasks of the service's spec failed or were
    rejected since ``since``; not while Swarm rolls an update back (it converges on the old spec then)."""
    if ((service.attrs.get("UpdateStatus") or {}).get("State")) == "rollback_started":
        return
    image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    failed = [
        t
        for t in service.tasks()
        if t["Status"]["State"] in FAILED
        and t["Spec"]["ContainerSpec"]["Image"] == image
        and _since(t.get("CreatedAt"), since)
    ]
    if len(failed) >= FAILED_TASKS:
        last = max(failed, key=lambda t: _instant(str(t["Status"].get("Timestamp", ""))) or EPOCH)["Status"]
        error = last.get("Err") or last.get("Message") or last["State"]
        raise ApplyFailed(f"{name}: {len(failed)} tasks failed ({last['State']}): {error}")


def _family(host: str) -> socket.AddressFamily:
    """The address family a connection to ``host`` uses: an IP literal's, else the first address it resolves to."""
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        pass
    try:
        return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][0]
    except (OSError, IndexError):
        return socket.AF_INET


def _port_for_family(bindings: list[Mapping[str, Any]], family: socket.AddressFamily) -> int | None:
    """The host port of the first binding on an address of ``family`` (``0.0.0.0``, ``::``, or one address)."""
    for binding in bindings:
        try:
            address = ipaddress.ip_address(str(binding.get("HostIp") or "0.0.0.0"))
        except ValueError:
            continue
        if (address.version == 6) == (family == socket.AF_INET6) and str(binding.get("HostPort", "")).isdigit():
            return int(binding["HostPort"])
    return None


def _answering(host: str, ports: list[int]) -> int:
    """The first of ``ports`` that accepts a TCP connection at ``host`` (a refusal is instant), else the first."""
    for port in dict.fromkeys(ports):
        try:
            with socket.create_connection((host, port), timeout=CONNECT_S):
                return port
        except OSError:
            continue
    return ports[0]
