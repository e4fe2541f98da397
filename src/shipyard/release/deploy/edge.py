"""The edge proxy on a target's engine (one HAProxy on the host network): its Compose project, its config
in a volume, switches through HAProxy's runtime API and graceful reloads."""

from __future__ import annotations

import io
import shlex
import tarfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ...config.targets import Target
from ...state import make_dirs
from ..gates.probes import NotReady, wait_until_ready
from .docker_cli import ApplyFailed, DockerCli
from .edge_config import COLOURS, CONFIG_DIR, SOCKET, EdgeState, backend, render, switch_commands

ROLE_LABEL = "io.shipyard.role"
TARGET_LABEL = "io.shipyard.target"
PROJECT_LABEL = "com.docker.compose.project"
START = f"while [ ! -s {CONFIG_DIR}/haproxy.cfg ]; do sleep 0.2; done; exec haproxy -W -db -f {CONFIG_DIR}/haproxy.cfg"
READY_S = 30.0  # how long a new edge, or a reloaded one, has to answer on its runtime API


class EdgeFailed(ApplyFailed):
    """The edge did not take a config; ``str()`` says why."""


def edge_project(target: Target, image: str) -> dict[str, Any]:
    """The edge's Compose project: HAProxy on the host network, hardened like the services."""
    probe = f"echo 'show info' | socat -t 2 stdio unix-connect:{SOCKET} | grep -q '^Pid:'"
    return {
        "name": edge_project_name(target.name),
        "services": {
            "edge": {
                "image": image,
                "network_mode": "host",
                "restart": "unless-stopped",
                "read_only": True,
                "cap_drop": ["ALL"],
                "cap_add": ["NET_BIND_SERVICE"],
                "security_opt": ["no-new-privileges:true"],
                "user": "0:0",  # without DAC_OVERRIDE: it reads and writes only its own files
                "tmpfs": ["/run/shipyard-edge:rw,size=1m", "/tmp:rw,size=16m"],
                "volumes": [f"config:{CONFIG_DIR}"],
                "entrypoint": ["sh", "-c", START],
                "stop_grace_period": f"{int(target.drain_s) + 5}s",
                "healthcheck": {
                    "test": ["CMD", "sh", "-c", probe],
                    "interval": "10s",
                    "start_period": "60s",
                    "start_interval": "1s",
                },  # fmt: skip
                "labels": {ROLE_LABEL: "edge", TARGET_LABEL: target.name},
            }
        },
        "volumes": {"config": {"labels": {ROLE_LABEL: "edge", TARGET_LABEL: target.name}}},
    }


def edge_project_name(target: str) -> str:
    return f"shipyard-{target}-edge"


class Edge:
    """The edge of one target, on its engine."""

    def __init__(self, cli: DockerCli, client: Any, work_dir: Path, target: Target) -> None:
        self.cli = cli
        self.client = client
        self.target = target
        self.name = edge_project_name(target.name)
        self.file = work_dir / "deploy" / target.name / "edge.yaml"

    # --- reading ---------------------------------------------------------------------------------

    def container(self) -> Any | None:
        """The edge's container, running or not; None before the first deploy through it."""
        found = self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.name}"})
        return found[0] if found else None

    def state(self) -> EdgeState | None:
        """What the edge serves now (its edge.json); None when there is no running edge."""
        container = self.container()
        if container is None or container.status != "running":
            return None
        code, out = container.exec_run(["cat", f"{CONFIG_DIR}/edge.json"])
        return EdgeState.from_json(out.decode()) if code == 0 and out.strip() else EdgeState()

    def image(self) -> str:
        container = self.container()
        if container is None:
            return ""
        return str((container.attrs.get("Config") or {}).get("Image", ""))

    def in_sync(self, state: EdgeState) -> bool:
        """HAProxy serves ``state`` right now (its runtime, not only its files): each route's live colour
        ready at its address, the other in maintenance. False also for an edge that is not running."""
        container = self.container()
        if container is None or container.status != "running":
            return False
        try:
            servers = _servers(self._command("show servers state"))
        except EdgeFailed:
            return False
        for service, route in state.routes.items():
            for colour in COLOURS:
                found = servers.get((backend(service), colour))
                if found is None:
                    return False
                address, ready = found
                if ready != (colour == route.live) or (ready and address != route.upstream(colour)):
                    return False
        return True

    def sessions(self, service: str, colour: str) -> int:
        """Connections the edge has open to one colour of a service now (HAProxy's ``scur``)."""
        out = self._command("show stat")
        header, *rows = [line for line in out.splitlines() if line.strip()]
        columns = header.lstrip("# ").split(",")
        for row in rows:
            cells = dict(zip(columns, row.split(","), strict=False))
            if cells.get("pxname") == backend(service) and cells.get("svname") == colour:
                return int(cells.get("scur") or 0)
        return 0

    # --- changing ----------------------------------------------------------------------------------

    def start(self, image: str, state: EdgeState) -> None:
        """Bring the edge up with ``state`` (a new edge, or one on another image: recreated)."""
        make_dirs(self.file.parent)
        self.file.write_text(yaml.safe_dump(edge_project(self.target, image), sort_keys=False), encoding="utf-8")
        argv = ["docker", "compose", "-p", self.name, "-f", str(self.file), "up", "--detach", "--quiet-pull"]
        self.cli.run([*argv, "--remove-orphans"])
        container = self.container()
        if container is None:
            raise EdgeFailed(f"docker compose up started no edge container for {self.name}")
        self._write(container, state)
        # an edge that was only stopped (a host restart) started on the config its volume held before this
        # write: once it answers, it reloads onto the one just written
        self._wait_answering(container, before_pid=None)
        pid = self._pid(container)
        container.kill(signal="SIGUSR2")
        self._wait_answering(container, before_pid=pid)

    def apply(self, before: EdgeState, after: EdgeState, *, reload: bool = False) -> None:
        """Make the running edge serve ``after``: a runtime switch when only colours changed, else (or with
        ``reload``: it does not serve ``before``) a graceful reload. The files are written (and checked)
        first, so a restarted edge serves ``after``."""
        container = self.container()
        if container is None:
            raise EdgeFailed(f"{self.name}: the edge is not running")
        self._write(container, after)
        if reload or before.listeners() != after.listeners() or before.drain_s != after.drain_s:
            pid = self._pid(container)
            container.kill(signal="SIGUSR2")  # HAProxy's master re-reads the config; old connections stay
            self._wait_answering(container, before_pid=pid)
            return
        commands = [
            command
            for service, route in after.routes.items()
            if before.routes.get(service) != route
            for command in switch_commands(service, before.routes.get(service), route)
        ]
        if commands:
            self._command("; ".join(commands))

    def point(self, service: str, colour: str, address: str) -> None:
        """Point one colour's server of ``service`` at ``address`` (host:port) at run time only: the files
        keep the route as it is, so a restarted edge serves it as before."""
        host, _, port = address.rpartition(":")
        self._command(f"set server {backend(service)}/{colour} addr {host} port {port}")

    def wait_drained(self, moves: Iterable[tuple[str, str]], drain_s: float, sleep: Any = time.sleep) -> float:
        """Wait until the edge has no connection open to any (service, old colour) of ``moves``, at most
        ``drain_s``; the seconds it took."""
        started = time.monotonic()
        pending = list(moves)
        while pending and time.monotonic() - started < drain_s:
            pending = [(s, c) for s, c in pending if self.sessions(s, c) > 0]
            if pending:
                sleep(0.2)
        return time.monotonic() - started

    def taken_ports(self, image: str, ports: Sequence[int]) -> list[int]:
        """Which of ``ports`` something on the target's host already listens on (a one-off container on
        the host network tries to bind each one)."""
        if not ports:
            return []
        each = " ".join(str(p) for p in sorted(set(ports)))
        script = (
            f"for p in {each}; do (timeout 0.5 socat TCP4-LISTEN:$p,reuseaddr /dev/null 2>/dev/null; "
            '[ $? -eq 124 ] || echo "$p") & done; wait'
        )
        out = self.client.containers.run(
            image, ["sh", "-c", script], entrypoint=[], network_mode="host", remove=True, user="0:0", cap_drop=["ALL"]
        )
        return sorted(int(word) for word in out.decode().split() if word.isdigit())

    def down(self) -> None:
        self.cli.run(["docker", "compose", "-p", self.name, "down", "--volumes", "--timeout", "10"])

    # --- the container -------------------------------------------------------------------------------

    def _write(self, container: Any, state: EdgeState) -> None:
        """edge.json and haproxy.cfg into the volume, as ``.new`` files, checked, then renamed."""
        files = {"edge.json.new": state.to_json(), "haproxy.cfg.new": render(state)}
        container.put_archive(CONFIG_DIR, _tar(files))
        code, out = container.exec_run(["haproxy", "-c", "-f", f"{CONFIG_DIR}/haproxy.cfg.new"])
        if code != 0:
            raise EdgeFailed(f"{self.name}: HAProxy refused the new config: {_first_line(out)}")
        rename = f"cd {CONFIG_DIR} && mv edge.json.new edge.json && mv haproxy.cfg.new haproxy.cfg"
        code, out = container.exec_run(["sh", "-c", rename])
        if code != 0:
            raise EdgeFailed(f"{self.name}: could not write its config: {_first_line(out)}")

    def _command(self, command: str) -> str:
        """One line to HAProxy's runtime API; its answer."""
        container = self.container()
        if container is None:
            raise EdgeFailed(f"{self.name}: the edge is not running")
        line = f"printf '%s\\n' {shlex.quote(command)} | socat -t 5 stdio unix-connect:{SOCKET}"
        code, out = container.exec_run(["sh", "-c", line])
        text = str(out.decode(errors="replace"))
        if code != 0:
            raise EdgeFailed(f"{self.name}: runtime API: {_first_line(out) or f'exit {code}'}")
        for answer in text.splitlines():
            if answer.startswith(("Unknown command", "No such", "Require", "Invalid")):
                raise EdgeFailed(f"{self.name}: runtime API refused {command!r}: {answer}")
        return text

    def _pid(self, container: Any) -> str:
        code, out = container.exec_run(
            ["sh", "-c", f"echo 'show info' | socat -t 2 stdio unix-connect:{SOCKET} 2>/dev/null | grep '^Pid:'"]
        )
        return out.decode().strip() if code == 0 else ""

    def _wait_answering(self, container: Any, before_pid: str | None) -> None:
        """Until a worker (a new one, after a reload) answers on the runtime API."""

        def answering() -> None:
            container.reload()
            if container.status in ("exited", "dead"):
                raise EdgeFailed(f"{self.name}: the edge exited: {_tail(container)}")
            if container.status != "running":  # created, restarting: it may come up on the new config
                raise NotReady(f"the edge is {container.status}")
            pid = self._pid(container)
            if not pid or pid == before_pid:
                raise NotReady("no new worker yet")

        try:
            wait_until_ready(answering, READY_S)
        except NotReady:
            raise EdgeFailed(
                f"{self.name}: HAProxy did not take the config in {READY_S:.0f}s: {_tail(container)}"
            ) from None


def _tar(files: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _first_line(out: bytes) -> str:
    lines = [line.strip() for line in out.decode(errors="replace").splitlines() if line.strip()]
    alerts = [line for line in lines if "ALERT" in line]
    return (alerts or lines or [""])[0][:200]


def _tail(container: Any) -> str:
    logs = container.logs(tail=5).decode(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in logs)[-300:] or "no log"


def _servers(answer: str) -> dict[tuple[str, str], tuple[str, bool]]:
    """``show servers state`` as (backend, server) -> (host:port, ready). Columns from its header line;
    an admin state with any maintenance or drain bit is not ready."""
    columns: list[str] = []
    found = {}
    for line in answer.splitlines():
        if line.startswith("# be_id"):
            columns = line.removeprefix("# ").split()
        elif columns and line.strip() and not line.startswith("#") and len(line.split()) >= len(columns):
            cells = dict(zip(columns, line.split(), strict=False))
            ready = int(cells.get("srv_admin_state", "1")) & 0x1F == 0
            address = f"{cells.get('srv_addr')}:{cells.get('srv_port')}"
            found[(cells.get("be_name", ""), cells.get("srv_name", ""))] = (address, ready)
    return found
