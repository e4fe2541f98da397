"""``shipyard status``, its options, help and handler: what each target runs now, from its engine, and
where it drifted."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config.project import load_project
from ..config.registry import parse_registry
from ..config.targets import Target
from ..errors import DriftFound
from ..oci.client import RegistryClient
from ..oci.reference import RegistryNamespace
from ..release.deploy.compose import target_named, target_services
from ..release.deploy.deployments import load_deployments
from ..release.deploy.docker_cli import DockerCli
from ..release.deploy.edge import Edge
from ..release.deploy.status import TargetStatus, find_drift, read_compose, read_swarm
from ..release.engine import connect_engine, resolve_engine
from ..runner import Runner
from .console import Console
from .options import REGISTRY, TARGETS, Arguments
from .shared import reachable_registry
from .verb import Verb


def _channel_digests(registry: RegistryClient, where: RegistryNamespace, target: Target, source: str,
                     services: list[str]) -> dict[str, str]:  # fmt: skip
    """service -> the digest the channel a deployment came from names now ({} for a release tag)."""
    if not source.startswith("channel "):
        return {}
    channel = source.removeprefix("channel ")
    found = {}
    for service in services:
        digest = registry.resolve(where.repository(target.profile, service), channel)
        if digest:
            found[service] = digest
    return found


def read_target(
    target: Target, services: list[str], registry: RegistryClient, where: RegistryNamespace, work_dir: Path
) -> TargetStatus:
    engine = resolve_engine(target)
    client = connect_engine(engine)
    try:
        if target.mode == "swarm":
            status = read_swarm(target, client)
        else:
            cli = DockerCli(engine, Runner(), {}, lambda event: None)
            edge = Edge(cli, client, work_dir, target) if target.has_edge else None
            status = read_compose(target, client, edge)
    finally:
        client.close()
    ledger = load_deployments(registry, where.namespace, target.name)
    good = ledger.last_good
    channel = _channel_digests(registry, where, target, good.source, services) if good is not None else {}
    find_drift(status, ledger, channel)
    return status


@dataclass(frozen=True, kw_only=True)
class StatusArgs(Arguments):
    targets: tuple[str, ...] | None
    registry: str | None


def cmd_status(args: StatusArgs, console: Console) -> int:
    project = load_project(args.project)
    names = args.targets or list(project.catalog.targets)
    targets = [target_named(project.catalog, name) for name in names]
    where = parse_registry(args.registry)
    with reachable_registry(where, console) as registry:
        statuses = [
            read_target(t, target_services(project.catalog, t), registry, where, project.work_dir) for t in targets
        ]
    if args.json:
        console.data(json.dumps([asdict(s) for s in statuses], indent=2, sort_keys=True))
    else:
        for status in statuses:
            _show(console, status)
    drifted = [s for s in statuses if s.drift]
    if drifted:
        first = drifted[0]
        raise DriftFound(f"{len(drifted)} target(s) drifted; {first.target}: {first.drift[0]}")
    if not args.json:
        console.line(f"{len(statuses)} target(s) run what their last deployment put there")
    return 0


def _show(console: Console, status: TargetStatus) -> None:
    edge = f", edge {status.edge}" if status.edge != "-" else ""
    console.line(f"{status.target} ({status.strategy}{edge}):")
    rows: list[tuple[str, ...]] = [("service", "release", "digest", "colour", "health", "uptime")]
    for s in status.services:
        uptime = f"{s.uptime_s:.0f}s" if s.uptime_s is not None else "-"
        rows.append((s.service, s.release, s.digest[:19] or "-", s.colour, s.health, uptime))
    console.table(rows)
    for line in status.drift:
        console.line(f"  drift: {line}")


VERBS = (
    Verb(
        "status",
        help="what each target runs now, read from its engine: release, digest, colour, health, uptime; "
        "exits 18 when a target drifted from its channel or its last deployment",
        example="shipyard status --target local --json",
        args=StatusArgs,
        run=cmd_status,
        options=(TARGETS, REGISTRY),
    ),
)
