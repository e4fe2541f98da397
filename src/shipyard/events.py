"""What stages tell the outside world. The library never prints; the CLI renders events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    kind: str  # e.g. "unit.started", "unit.built", "base.ready", "command", "info"
    message: str
    unit: str = ""
    data: dict[str, Any] = field(default_factory=dict)


Emit = Callable[[Event], None]


def discard(event: Event) -> None:
    """An ``Emit`` that drops everything (library default)."""
