"""What a target runs now, read from its engine (not the ledger), and where that differs from what it should.

Per service: the release (the container's label), the digest it was created from, the colour serving it
(behind the edge), health and uptime. Drift is each difference from the target's last complete
deployment (a digest the ledger never put there, a service missing or stopped, a container the ledger
does not know) and from the channel it was deployed from, when that channel has moved since.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ...config.targets import Target
from .colours import COLOUR_LABEL, SERVICE_LABEL
from .compose import RELEASE_LABEL, TARGET_LABEL
from .deployments import DeploymentLedger
from .edge import Edge
from .swarm_apply import STACK_LABEL


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    release: str
    digest: str
    colour: str  # blue or green behind the edge; "-" in place or in a swarm
    health: str  # healthy, unhealthy, starting, running (no healthcheck), exited, n/m running (swarm)
    uptime_s: float | None


@dataclass
class TargetStatus:
    target: str
    strategy: str
    services: list[ServiceStatus] = field(default_factory=list)
    edge: str = "-"  # the edge proxy's health, where the target has one
    drift: list[str] = field(default_factory=list)


def digest_of(ref: str) -> str:
    return ref.partition("@")[2]


def _uptime(started_at: str, now: datetime) -> float | None:
    try:
        started = datetime.fromisoformat(started_at[:26].rstrip("Z") + "+00:00")
    except ValueError:
        return None
    return round((now - started).total_seconds(), 1) if started.year > 1 else None


def _health(attrs: Mapping[str, Any]) -> str:
    state = attrs.get("State") or {}
    status = str(state.get("Status", "?"))
    if status != "running":
        return status
    return str((state.get("Health") or {}).get("Status") or "running")


def read_compose(target: Target, client: Any, edge: Edge | None, now: datetime | None = None) -> TargetStatus:
    """A Compose target's services as its engine runs them; behind the edge, the colour the edge serves."""
    now = now or datetime.now(UTC)
    live = {}
    status = TargetStatus(target.name, target.strategy if target.has_edge else "in-place")
    if edge is not None:
        routes = edge.state()
        container = edge.container()
        status.edge = "absent" if container is None else _health(container.attrs)
        live = {service: route.live for service, route in (routes.routes if routes else {}).items()}
    for c in client.containers.list(all=True, filters={"label": f"{TARGET_LABEL}={target.name}"}):
        labels = c.labels
        service = labels.get(SERVICE_LABEL) or labels.get("com.docker.compose.service", "?")
        colour = labels.get(COLOUR_LABEL, "-")
        if service == "edge" and "io.shipyard.role" in labels:
            continue
        if colour != "-" and live.get(service) != colour:
            status.drift.append(f"{service}: a {colour} container is left beside the live one (an unfinished deploy)")
            continue
        image = str((c.attrs.get("Config") or {}).get("Image", ""))
        state = c.attrs.get("State") or {}
        status.services.append(
            ServiceStatus(
                service,
                labels.get(RELEASE_LABEL, "?"),
                digest_of(image),
                colour,
                _health(c.attrs),
                _uptime(str(state.get("StartedAt", "")), now),
            )
        )
    status.services.sort(key=lambda s: s.service)
    return status


def read_swarm(target: Target, client: Any) -> TargetStatus:
    status = TargetStatus(target.name, "swarm")
    for service in client.services.list(filters={"label": f"{STACK_LABEL}=shipyard-{target.name}"}):
        spec = service.attrs["Spec"]
        image = str(spec["TaskTemplate"]["ContainerSpec"]["Image"])
        wanted = int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
        tasks = service.tasks(filters={"desired-state": "running"})
        running = sum(t["Status"]["State"] == "running" for t in tasks)
        name = str(service.name).removeprefix(f"shipyard-{target.name}_")
        release = str((spec.get("Labels") or {}).get(RELEASE_LABEL, "?"))
        status.services.append(ServiceStatus(name, release, digest_of(image), "-", f"{running}/{wanted} running", None))
    status.services.sort(key=lambda s: s.service)
    return status


def serving(health: str) -> bool:
    """A health that serves: healthy, running without a healthcheck, or every swarm replica running.

    >>> [serving(h) for h in ("healthy", "running", "2/2 running", "1/2 running", "unhealthy")]
    [True, True, True, False, False]
    """
    if health.endswith(" running"):
        running, _, wanted = health.removesuffix(" running").partition("/")
        return running == wanted
    return health in ("healthy", "running")


def find_drift(status: TargetStatus, ledger: DeploymentLedger, channel: Mapping[str, str] | None = None) -> None:
    """Add to ``status.drift`` each way the engine differs from the last complete deployment, and from
    ``channel`` (service -> digest its tag names now), where the target was deployed from a channel."""
    good = ledger.last_good
    if good is None:
        if status.services:
            status.drift.append("services run here that shipyard never deployed (no complete deployment)")
        return
    expected = {service: digest_of(ref) for service, ref in good.images.items()}
    running = {s.service: s for s in status.services}
    for service, digest in sorted(expected.items()):
        found = running.get(service)
        if found is None:
            status.drift.append(f"{service}: not running; {good.release} ({good.at}) deployed {digest[:19]}")
        elif found.digest != digest:
            status.drift.append(
                f"{service}: runs {found.digest[:19] or 'an image by tag'}, which the ledger never deployed "
                f"here ({good.release} put {digest[:19]})"
            )
        elif not serving(found.health):
            status.drift.append(f"{service}: {found.health}")
    for service in sorted(set(running) - set(expected)):
        status.drift.append(f"{service}: runs here, but the last deployment ({good.release}) has no such service")
    for service, digest in sorted((channel or {}).items()):
        if expected.get(service) not in (None, digest):
            status.drift.append(
                f"{service}: {good.source} now points at {digest[:19]}, not deployed yet "
                f"(runs {expected[service][:19]})"
            )
