"""Applying a Compose project to a target's engine with the docker CLI, and reading back what runs there.

``docker compose -p shipyard-<target> up -d --wait --remove-orphans`` does the work: Compose recreates
only the services whose definition changed, waits for their healthchecks and removes services the
project no longer has. What runs is read from the engine (the containers' labels and the reference
each was created from), never from a file of ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ...state import make_dirs
from .docker_cli import DockerCli, Running

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


def project_name(target: str) -> str:
    return f"shipyard-{target}"


class ComposeApplier:
    def __init__(self, cli: DockerCli, client: Any, work_dir: Path) -> None:
        self.cli = cli
        self.client = client
        self.file = work_dir / "deploy" / cli.engine.target / "compose.yaml"
        self.name = project_name(cli.engine.target)

    def running(self) -> list[Running]:
        found = []
        for container in self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.name}"}):
            state = container.attrs.get("State") or {}
            found.append(
                Running(
                    service=container.labels.get(SERVICE_LABEL, "?"),
                    image=str((container.attrs.get("Config") or {}).get("Image", "")),
                    status=str(state.get("Status", "")),
                    health=str((state.get("Health") or {}).get("Status", "")),
                )
            )
        return found

    def up(self, project: Mapping[str, Any], timeout_s: float) -> None:
        make_dirs(self.file.parent)
        self.file.write_text(yaml.safe_dump(dict(project), sort_keys=False), encoding="utf-8")
        argv = ["docker", "compose", "-p", self.name, "-f", str(self.file), "up", "--detach", "--wait"]
        argv += ["--wait-timeout", str(int(timeout_s)), "--remove-orphans", "--quiet-pull"]
        self.cli.run(argv)

    def live_ports(self, service: str, port: int, container_port: int) -> list[int]:
        """Where the live check reaches ``service``: the host port Compose publishes it on."""
        return [port]

    def down(self) -> None:
        """Stop and remove what the project started; its volumes (the model cache) stay."""
        self.cli.run(["docker", "compose", "-p", self.name, "down", "--remove-orphans", "--timeout", "10"])
