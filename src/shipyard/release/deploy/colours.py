"""A service's two colours on a target: a Compose project each, what runs in them, their host ports.

Behind the edge, each service of a target runs as ``shipyard-<target>-<service>-<colour>``, a Compose
project of one service, so one service moves without touching another. Its container publishes the
service's port on a host port of that colour (on 127.0.0.1 for a local engine): the edge forwards to it,
and the deploy checks the new colour there before any user request reaches it. What runs is read from
the engine, by the labels each container carries (target, service, colour, release, settings).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...state import make_dirs
from .compose import RELEASE_LABEL, TARGET_LABEL
from .docker_cli import DockerCli

SERVICE_LABEL = "io.shipyard.service"
COLOUR_LABEL = "io.shipyard.colour"
SETTINGS_LABEL = "io.shipyard.settings"
PORT_LABEL = "io.shipyard.port"  # the host port the colour publishes on
STAGE_PORTS = range(20000, 26000)  # host ports a colour may publish on (below Linux's ephemeral range)


def colour_project_name(target: str, service: str, colour: str) -> str:
    return f"shipyard-{target}-{service}-{colour}"


def settings_digest(definition: Mapping[str, Any]) -> str:
    """A service's definition less what differs between two deploys of the same thing (the release that
    built it, its colour, the host port): the same digest and settings under another release's name is
    what already runs."""
    labels = {k: v for k, v in (definition.get("labels") or {}).items() if k != RELEASE_LABEL}
    kept = {k: v for k, v in definition.items() if k not in ("ports", "labels")}
    text = json.dumps({**kept, "labels": labels}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ColourContainer:
    """One colour of one service, as the engine has it."""

    service: str
    colour: str
    image: str  # the reference it was created from: repository@sha256:…
    release: str
    settings: str
    port: int  # the host port it publishes on
    status: str  # running, exited, restarting, …
    health: str  # healthy, unhealthy, starting, or ""
    started_at: str
    container_id: str

    @property
    def healthy(self) -> bool:
        return self.status == "running" and self.health in ("", "healthy")


def colour_containers(client: Any, target: str) -> dict[str, dict[str, ColourContainer]]:
    """service -> colour -> its container, for every colour container of ``target`` on the engine."""
    found: dict[str, dict[str, ColourContainer]] = {}
    for c in client.containers.list(all=True, filters={"label": [f"{TARGET_LABEL}={target}", COLOUR_LABEL]}):
        labels = c.labels
        state = c.attrs.get("State") or {}
        item = ColourContainer(
            service=labels.get(SERVICE_LABEL, "?"),
            colour=labels.get(COLOUR_LABEL, "?"),
            image=str((c.attrs.get("Config") or {}).get("Image", "")),
            release=labels.get(RELEASE_LABEL, "?"),
            settings=labels.get(SETTINGS_LABEL, ""),
            port=int(labels.get(PORT_LABEL, "0") or 0),
            status=str(state.get("Status", "")),
            health=str((state.get("Health") or {}).get("Status", "")),
            started_at=str(state.get("StartedAt", "")),
            container_id=str(c.id),
        )
        found.setdefault(item.service, {})[item.colour] = item
    return found


def published_ports(client: Any) -> set[int]:
    """Every host port a container on the engine publishes (or asked for), running or not."""
    used: set[int] = set()
    for c in client.containers.list(all=True):
        bindings = ((c.attrs.get("HostConfig") or {}).get("PortBindings") or {}).values()
        for binding in bindings:
            for entry in binding or []:
                if str(entry.get("HostPort", "")).isdigit():
                    used.add(int(entry["HostPort"]))
    return used


def candidate_ports(target: str, service: str, colour: str, avoid: Collection[int], count: int = 8) -> list[int]:
    """Host ports for one colour of a service, first choice first: the same every deploy (a hash of the
    names), skipping ``avoid``.

    >>> candidate_ports("t", "api", "blue", avoid=()) == candidate_ports("t", "api", "blue", avoid=())
    True
    """
    span = len(STAGE_PORTS)
    start = int(hashlib.sha256(f"{target}/{service}/{colour}".encode()).hexdigest(), 16) % span
    ports = []
    for i in range(span):
        port = STAGE_PORTS[(start + i) % span]
        if port not in avoid:
            ports.append(port)
            if len(ports) == count:
                break
    return ports


def bind_address(probe_host: str) -> str:
    """Where a colour publishes: loopback for a local engine; the engine's own address when the deploy
    reaches it by an IP address; else every address of its host."""
    if probe_host == "127.0.0.1":
        return probe_host
    try:
        return str(ipaddress.IPv4Address(probe_host))
    except ValueError:
        return "0.0.0.0"


def upstream_address(bind: str, port: int) -> str:
    """Where the edge (on the host's network) reaches a colour published on ``bind``."""
    return f"{'127.0.0.1' if bind == '0.0.0.0' else bind}:{port}"


class ColourProject:
    """One colour of one service, brought up and down with ``docker compose``."""

    def __init__(self, cli: DockerCli, work_dir: Path, target: str, service: str, colour: str) -> None:
        self.cli = cli
        self.name = colour_project_name(target, service, colour)
        self.file = work_dir / "deploy" / target / f"{service}-{colour}.yaml"
        self.service = service

    def up(self, project: Mapping[str, Any]) -> None:
        """Create and start it (Compose pulls nothing: the images were pulled before)."""
        make_dirs(self.file.parent)
        self.file.write_text(yaml.safe_dump(dict(project), sort_keys=False), encoding="utf-8")
        argv = ["docker", "compose", "-p", self.name, "-f", str(self.file), "up", "--detach"]
        self.cli.run([*argv, "--pull", "never", "--remove-orphans", "--force-recreate"])

    def stop(self) -> None:
        self.cli.run(["docker", "compose", "-p", self.name, "stop", "--timeout", "10"])

    def start(self) -> None:
        self.cli.run(["docker", "compose", "-p", self.name, "start"])

    def down(self) -> None:
        """Stop and remove its container; its volumes (the model cache) stay."""
        self.cli.run(["docker", "compose", "-p", self.name, "down", "--remove-orphans", "--timeout", "10"])


def colour_definition(
    project: Mapping[str, Any], service: str, colour: str, bind: str, port: int, container_port: int
) -> dict[str, Any]:
    """The target's Compose project narrowed to one service in one colour, published on ``bind:port``."""
    definition = dict(project["services"][service])
    target = str(project["x-shipyard"]["target"])
    definition["ports"] = [f"{bind}:{port}:{container_port}"]
    # the engine's default bridge: a colour is one container the edge reaches by its port, and a network of
    # its own per colour project would only use up the engine's address pools (a few dozen by default)
    definition["network_mode"] = "bridge"
    definition["labels"] = {
        **definition.get("labels", {}),
        SERVICE_LABEL: service,
        COLOUR_LABEL: colour,
        SETTINGS_LABEL: settings_digest(project["services"][service]),
        PORT_LABEL: str(port),
    }
    return {
        "name": colour_project_name(target, service, colour),
        "services": {service: definition},
        "volumes": project.get("volumes", {}),
        "x-shipyard": {**project["x-shipyard"], "colour": colour},
    }
