"""Applying a Compose project to a target's engine with the docker CLI, and reading back what runs there.

``docker compose -p shipyard-<target> up -d --wait --remove-orphans`` does the work: Compose recreates
only the services whose definition changed, waits for their healthchecks and removes services the
project no longer has. What runs is read from the engine (the containers' labels and the reference
each was created from), never from a file of ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ...errors import CommandFailed
from ...events import Emit, Event
from ...runner import Runner
from ...state import make_dirs
from .target_engine import TargetEngine

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class ApplyFailed(Exception):
    """The engine did not bring the project up healthy; ``str()`` says why, in a few words."""


@dataclass(frozen=True)
class Running:
    service: str
    image: str  # the reference the container was created from: repository@sha256:… for ours
    status: str  # running, exited, …
    health: str  # healthy, unhealthy, starting, or "" without a healthcheck


def project_name(target: str) -> str:
    return f"shipyard-{target}"


class ComposeApplier:
    def __init__(
        self, engine: TargetEngine, client: Any, runner: Runner, work_dir: Path, environ: Mapping[str, str], emit: Emit
    ) -> None:
        self.engine = engine
        self.client = client
        self.runner = runner
        self.file = work_dir / "deploy" / engine.target / "compose.yaml"
        self.environ = environ
        self.emit = emit
        self.name = project_name(engine.target)

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
        self._compose(argv)

    def live_ports(self, service: str, port: int, container_port: int) -> list[int]:
        """Where the live check reaches ``service``: the host port Compose publishes it on."""
        return [port]

    def down(self) -> None:
        """Stop and remove what the project started; its volumes (the model cache) stay."""
        self._compose(["docker", "compose", "-p", self.name, "down", "--remove-orphans", "--timeout", "10"])

    def _compose(self, argv: list[str]) -> None:
        def log(line: str) -> None:
            self.emit(Event("deploy.output", f"{self.engine.target}: {line}"))

        try:
            self.runner.run(argv, env=self.engine.cli_env(self.environ), on_line=log)
        except CommandFailed as exc:
            raise ApplyFailed(failure_line(exc.output) or f"docker compose exited {exc.returncode}") from None


def failure_line(output: str) -> str:
    """The line of Compose's output that says what went wrong (it ends with the failure)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        lowered = line.lower()
        if "unhealthy" in lowered or "error" in lowered or "failed" in lowered:
            return line[:200]
    return lines[-1][:200] if lines else ""
