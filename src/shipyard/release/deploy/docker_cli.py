"""What both ways of applying a project share: the docker CLI aimed at a target's engine, its failures.

Compose (compose_apply.py) and Swarm (swarm_apply.py) both drive the docker CLI, with the deploying
environment (secrets included, for the project's ``${NAME:?…}``) pointed at the target's engine;
a failure is the line of the CLI's output that says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...errors import CommandFailed
from ...events import Emit, Event
from ...runner import Runner
from ..engine import TargetEngine


class ApplyFailed(Exception):
    """The engine did not bring the project up healthy; ``str()`` says why, in a few words."""


@dataclass(frozen=True)
class Running:
    service: str
    image: str  # the reference the container was created from: repository@sha256:… for ours
    status: str  # running, exited, …
    health: str  # healthy, unhealthy, starting, or "" without a healthcheck


@dataclass(frozen=True)
class DockerCli:
    engine: TargetEngine
    runner: Runner
    environ: Mapping[str, str]
    emit: Emit

    def run(self, argv: list[str]) -> None:
        """``argv`` (docker …) against the target's engine, its output as detail events; ApplyFailed saying why."""

        def log(line: str) -> None:
            self.emit(Event("deploy.output", f"{self.engine.target}: {line}"))

        try:
            self.runner.run(argv, env=self.engine.cli_env(self.environ), on_line=log)
        except CommandFailed as exc:
            raise ApplyFailed(failure_line(exc.output) or f"{' '.join(argv[:2])} exited {exc.returncode}") from None


def failure_line(output: str) -> str:
    """The line of the CLI's output that says what went wrong (it ends with the failure)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        lowered = line.lower()
        if "unhealthy" in lowered or "error" in lowered or "failed" in lowered:
            return line[:200]
    return lines[-1][:200] if lines else ""
