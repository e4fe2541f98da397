"""The channel ledger: every promotion and rollback of a channel, kept in the registry itself.

One JSON document per channel, pushed as a single-layer OCI artifact to
``<namespace>/shipyard-ledger:<channel>``, so ``shipyard history`` works from any machine
that can reach the registry. An entry is written ``in-progress`` before any tag moves and
``complete`` after the last one, so an interrupted promotion shows, and is finished by
running the same promotion again.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ...errors import RegistryError
from ...oci.artifacts import pull_document, push_document
from ...oci.client import RegistryClient

LEDGER_TYPE = "application/vnd.shipyard.ledger.v1+json"
State = Literal["in-progress", "complete"]


@dataclass
class Entry:
    action: Literal["promote", "rollback"]
    release: str
    digests: dict[str, str]  # unit -> digest the channel points at
    previous: dict[str, str | None]  # unit -> digest before (None: the channel tag did not exist)
    at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    by: str = field(default_factory=lambda: actor())
    state: State = "in-progress"
    forced: bool = False
    reason: str = ""


@dataclass
class Ledger:
    channel: str
    entries: list[Entry] = field(default_factory=list)

    @property
    def completed(self) -> list[Entry]:
        return [e for e in self.entries if e.state == "complete"]

    def to_json(self) -> bytes:
        return (
            json.dumps(
                {"channel": self.channel, "entries": [asdict(e) for e in self.entries]}, indent=2, sort_keys=True
            ).encode()
            + b"\n"
        )


def actor() -> str:
    """Who promotes: the CI actor when there is one, else user@host."""
    if os.environ.get("GITHUB_ACTOR"):
        return f"{os.environ['GITHUB_ACTOR']} (GitHub Actions)"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def ledger_repository(namespace: str) -> str:
    return f"{namespace}/shipyard-ledger"


def load_ledger(registry: RegistryClient, namespace: str, channel: str) -> Ledger:
    repository = ledger_repository(namespace)
    try:
        data = pull_document(registry, repository, channel)
        return Ledger(channel, [Entry(**entry) for entry in data["entries"]]) if data is not None else Ledger(channel)
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(f"{repository}:{channel}: unreadable ledger ({exc})") from None


def save_ledger(registry: RegistryClient, namespace: str, ledger: Ledger) -> str:
    return push_document(
        registry, ledger_repository(namespace), ledger.channel, ledger.to_json(), media_type=LEDGER_TYPE
    )
