"""What stages tell the outside world. The library never prints; the CLI renders events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

# every kind of event a stage emits: a closed set, so a renderer matching a kind no stage emits (or a
# stage emitting one no renderer knows) is a type error, not a silent miss
EventKind = Literal[
    "aliases.skipped",
    "base.building",
    "base.ready",
    "build.output",
    "canary.cleanup",
    "canary.engine",
    "canary.started",
    "canary.unit",
    "command",
    "deploy.check",
    "deploy.done",
    "deploy.failed",
    "deploy.output",
    "deploy.rollback",
    "deploy.started",
    "deploy.step",
    "info",
    "model.built",
    "model.layer.uploaded",
    "model.placed",
    "model.planned",
    "model.pushed",
    "model.ready",
    "model.signed",
    "model.unsigned",
    "plan",
    "preflight",
    "promote.done",
    "promote.forced",
    "promote.noop",
    "promote.repair",
    "promote.resume",
    "promote.slow",
    "promote.stale",
    "promote.unit",
    "promote.wait",
    "prune.deleted",
    "prune.untagged",
    "record",
    "rollback.done",
    "scan.unit",
    "scan.warning",
    "unit.attested",
    "unit.built",
    "unit.checking",
    "unit.failed",
    "unit.retry",
    "unit.reusing",
    "unit.skipped",
    "unit.started",
    "unit.step",
    "unit.warning",
    "verdict.signed",
    "verify.unit",
]


@dataclass(frozen=True)
class Event:
    kind: EventKind
    message: str
    unit: str = ""
    data: dict[str, Any] = field(default_factory=dict)


Emit = Callable[[Event], None]


def discard(event: Event) -> None:
    """An ``Emit`` that drops everything (library default)."""
