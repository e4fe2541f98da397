"""The deployment ledger: what each target ran, when, who put it there and the steps it took, one document
per target (``<namespace>/shipyard-deployments:<target>``); a rollback re-applies the project an entry kept."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ...errors import RegistryError
from ...oci.artifacts import pull_document, push_document
from ...oci.client import RegistryClient
from ...versions import check_schema, writer
from ..channels.ledger import actor

DEPLOYMENTS_TYPE = "application/vnd.shipyard.deployments.v1+json"
DEPLOYMENTS_SCHEMA = 2  # 2: schema and written_by in the document; 1 (no field): read as before
DeployState = Literal["in-progress", "complete", "rolled-back", "failed", "interrupted"]


@dataclass
class Deployment:
    release: str
    source: str  # what was deployed: "channel stable" or a release tag
    images: dict[str, str]  # service -> image by digest
    previous: dict[str, str]  # service -> image that ran before ({}: the target's first deploy)
    project: dict[str, Any]  # the Compose project applied
    checks: dict[str, dict[str, Any]]  # service -> port, probe, requests: its live check, after it or a rollback
    at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    by: str = field(default_factory=actor)
    state: DeployState = "in-progress"
    reason: str = ""  # why it failed (and how the rollback went)
    seconds: float | None = None  # from the first engine call to the outcome
    strategy: str = "in-place"  # how it was applied: blue-green, stop-first, in-place (or a swarm's own)
    steps: list[dict[str, Any]] = field(default_factory=list)  # {step, service, seconds, ok, detail}, in order
    p95_ms: float | None = None  # the live check's slowest service p95 through the target's ports
    models: dict[str, str] = field(default_factory=dict)  # model name -> its artifact by digest, on the target


@dataclass
class DeploymentLedger:
    target: str
    entries: list[Deployment] = field(default_factory=list)

    @property
    def last_good(self) -> Deployment | None:
        """The newest deployment that completed: what a failed deploy goes back to."""
        return next((e for e in reversed(self.entries) if e.state == "complete"), None)

    @property
    def last(self) -> Deployment | None:
        return self.entries[-1] if self.entries else None

    def to_json(self) -> bytes:
        document = {"target": self.target, "schema": DEPLOYMENTS_SCHEMA, "written_by": writer(),
                    "entries": [asdict(e) for e in self.entries]}  # fmt: skip
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def deployments_repository(namespace: str) -> str:
    return f"{namespace}/shipyard-deployments"


def load_deployments(registry: RegistryClient, namespace: str, target: str) -> DeploymentLedger:
    repository = deployments_repository(namespace)
    try:
        data = pull_document(registry, repository, target)
        if data is None:
            return DeploymentLedger(target)
        check_schema(data, DEPLOYMENTS_SCHEMA, "deployment ledger", f"{registry.target.host}/{repository}:{target}")
        known = set(Deployment.__dataclass_fields__)
        entries = [Deployment(**{k: v for k, v in entry.items() if k in known}) for entry in data["entries"]]
        return DeploymentLedger(target, entries)
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryError(
            f"{registry.target.host}/{repository}:{target}: unreadable deployment ledger ({exc})"
        ) from None


def save_deployments(registry: RegistryClient, namespace: str, ledger: DeploymentLedger) -> str:
    repository = deployments_repository(namespace)
    return push_document(registry, repository, ledger.target, ledger.to_json(), media_type=DEPLOYMENTS_TYPE)
