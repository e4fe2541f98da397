"""The deploy-side verbs, each with its options, help and handler: compose-file, deploy, rollout and
deployments."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..config.keys import resolve_keys
from ..config.project import Project, load_project
from ..config.registry import parse_registry
from ..config.targets import Target
from ..errors import ConfigError, DeployFailed
from ..oci.client import RegistryClient
from ..oci.reference import RegistryNamespace
from ..preflight import check_registry
from ..record import ReleaseRecord, find_record, load_record
from ..release.channels.promote import check_channel
from ..release.channels.trust import trust_problems
from ..release.deploy.compose import Placed, compose_project, from_channel, from_release, target_named
from ..release.deploy.deploy import DeployContext, DeployOutcome, TargetDeploy
from ..release.deploy.deployments import load_deployments
from ..release.deploy.rollout import roll_out
from ..runner import Runner
from ..state import make_dirs
from .console import Console
from .options import CHANNEL, DRY_RUN, LOCK_WAIT, REGISTRY, RELEASE, TARGET, TARGETS, Arguments, Option
from .shared import reachable_registry, registry_client
from .verb import Verb

# compose-file and deploy: a channel from the registry, or a release's record
WHAT_RELEASE = RELEASE.but(help="a release tag or alias (gated as promote is); or --channel")
WHAT_CHANNEL = CHANNEL.but(required=False, help="deploy what this channel's tags point at in the registry")


@dataclass(frozen=True, kw_only=True)
class TargetArgs(Arguments):
    """deployments' arguments: one target, and the registry of its ledger."""

    target: str
    registry: str | None


@dataclass(frozen=True, kw_only=True)
class PlacedArgs(TargetArgs):
    """What compose-file and deploy share: which target, and what to put there."""

    release: str | None
    channel: str | None


@dataclass(frozen=True, kw_only=True)
class ComposeFileArgs(PlacedArgs):
    output: Path | None


@dataclass(frozen=True, kw_only=True)
class DeployArgs(PlacedArgs):
    dry_run: bool
    lock_wait: float


@dataclass(frozen=True, kw_only=True)
class RolloutArgs(Arguments):
    channel: str
    batch_size: int
    targets: tuple[str, ...] | None
    dry_run: bool
    lock_wait: float
    registry: str | None


def _what(args: PlacedArgs, command: str) -> None:
    if bool(args.channel) == bool(args.release):
        raise ConfigError(f"{command}: name what to deploy: --channel NAME or a RELEASE tag (one of them)")


def _placed(
    channel: str | None,
    release: str | None,
    project: Project,
    target: Target,
    registry: RegistryClient,
    where: RegistryNamespace,
) -> tuple[list[Placed], str]:
    """The target's services at the digests the channel (from the registry) or the release record names,
    each signed by a trusted key and carrying the signed verdicts it needs."""
    profile = project.profiles[target.profile]
    trusted = list(resolve_keys(project.catalog.trusted_keys, where).trusted)
    if channel:
        placed = from_channel(registry, where, project.catalog, target, profile, channel, trusted=trusted)
        return placed, f"channel {channel}"
    record = load_record(find_record(project.root, release))

    def signed(release: ReleaseRecord, keys: list[str]) -> list[str]:
        return trust_problems(registry, trusted, release, keys)

    return from_release(record, project.catalog, target, policy=signed), record.release


def cmd_compose_file(args: ComposeFileArgs, console: Console) -> int:
    _what(args, "compose-file")
    project = load_project(args.project)
    target = target_named(project.catalog, args.target)
    where = parse_registry(args.registry)
    with registry_client(where) as registry:
        if args.channel:
            check_registry(registry, lambda event: None)  # stdout may be the project itself: no progress there
        placed, source = _placed(args.channel, args.release, project, target, registry, where)
    document = compose_project(target, project.profiles[target.profile], placed, source)
    text = f"# shipyard compose-file --target {target.name}: {source}, every image by digest\n"
    text += yaml.safe_dump(document, sort_keys=False, default_flow_style=False)
    if args.output:
        make_dirs(args.output.resolve().parent)
        args.output.write_text(text, encoding="utf-8")
        console.line(f"wrote {args.output}: {len(placed)} service(s) of {target.name} from {source}")
    elif args.json:
        console.data(json.dumps(document, indent=2))
    else:
        console.data(text.rstrip("\n"))
    return 0


def _context(
    project: Project, registry: RegistryClient, where: RegistryNamespace, console: Console, lock_wait: float
) -> DeployContext:
    if lock_wait < 0:
        raise ConfigError(f"--lock-wait: expected seconds (0 or more), got {lock_wait:g}")
    runner = Runner(echo=console.command)
    return DeployContext(registry, where.namespace, project.work_dir, runner, console.event, lock_wait_s=lock_wait)


def cmd_deploy(args: DeployArgs, console: Console) -> int:
    _what(args, "deploy")
    project = load_project(args.project)
    target = target_named(project.catalog, args.target)
    where = parse_registry(args.registry)
    with reachable_registry(where, console) as registry:
        ctx = _context(project, registry, where, console, args.lock_wait)
        deploy = TargetDeploy(ctx, target, project.profiles[target.profile])
        try:
            deploy.plan(*_placed(args.channel, args.release, project, target, registry, where))
            for line in deploy.plan_lines():
                console.line(line)
            if args.dry_run:
                console.line(f"{target.name}: dry run, nothing changed")
                return 0
            outcome = deploy.apply()
        finally:
            deploy.close()
    if args.json:
        console.data(json.dumps(asdict(outcome), indent=2, sort_keys=True))
    if outcome.failed:
        raise DeployFailed(outcome.line)
    return 0


def cmd_rollout(args: RolloutArgs, console: Console) -> int:
    project = load_project(args.project)
    check_channel(args.channel)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: expected 1 or more, got {args.batch_size}")
    names = args.targets or list(project.catalog.targets)
    targets = [target_named(project.catalog, name) for name in names]
    if not targets:
        raise ConfigError("rollout: shipyard.toml has no [targets.<name>]: add one (see docs/reference/targets.md)")
    where = parse_registry(args.registry)
    with reachable_registry(where, console) as registry:
        ctx = _context(project, registry, where, console, args.lock_wait)
        deploys: list[TargetDeploy] = []
        try:
            for target in targets:  # every target's checks, then every plan, before any target changes
                deploys.append(TargetDeploy(ctx, target, project.profiles[target.profile]))
            for deploy in deploys:
                deploy.plan(*_placed(args.channel, None, project, deploy.target, registry, where))
            for deploy in deploys:
                for line in deploy.plan_lines():
                    console.line(line)
            if args.dry_run:
                console.line(f"rollout of channel {args.channel}: dry run, nothing changed")
                return 0
            outcomes = roll_out(deploys, args.batch_size)
        finally:
            for deploy in deploys:
                deploy.close()
    _outcome_table(console, outcomes)
    if args.json:
        console.data(json.dumps([asdict(o) for o in outcomes], indent=2, sort_keys=True))
    failed = [o for o in outcomes if o.failed]
    if failed:
        unreached = sum(o.outcome == "not reached" for o in outcomes)
        raise DeployFailed(
            failed[0].line + (f"; rollout stopped, {unreached} target(s) not reached" if unreached else "")
        )
    console.line(f"rollout of channel {args.channel}: {len(outcomes)} target(s) on it")
    return 0


def _outcome_table(console: Console, outcomes: list[DeployOutcome]) -> None:
    rows: list[tuple[str, ...]] = [("target", "before", "after", "health", "p95", "seconds", "outcome")]
    for o in outcomes:
        p95 = f"{o.p95_ms} ms" if o.p95_ms is not None else "-"
        seconds = f"{o.seconds:.1f}" if o.outcome not in ("not reached", "unchanged") else "-"
        rows.append((o.target, o.before, o.after, o.health, p95, seconds, o.outcome))
    console.table(rows)


def cmd_deployments(args: TargetArgs, console: Console) -> int:
    project = load_project(args.project)
    target = target_named(project.catalog, args.target)
    where = parse_registry(args.registry)
    with reachable_registry(where, console) as registry:
        ledger = load_deployments(registry, where.namespace, target.name)
    if args.json:
        console.data(ledger.to_json().decode())
        return 0
    if not ledger.entries:
        console.line(f"{target.name}: no deployments yet in {where}")
        return 0
    header = ("when", "who", "release", "from", "services", "strategy", "state", "seconds", "note")
    rows: list[tuple[str, ...]] = [header]
    for e in ledger.entries:
        seconds = f"{e.seconds:.1f}" if e.seconds is not None else "-"
        cells = (e.at, e.by[:30], e.release, e.source, str(len(e.images)), e.strategy, e.state, seconds, e.reason[:70])
        rows.append(cells)
    console.table(rows)
    return 0


VERBS = (
    Verb(
        "compose-file",
        help="a deploy target's Docker Compose project: the channel's (or a release's) services by digest, hardened",
        example="shipyard compose-file --target local --channel stable --output compose.yaml",
        args=ComposeFileArgs,
        run=cmd_compose_file,
        options=(
            WHAT_RELEASE,
            TARGET,
            WHAT_CHANNEL,
            Option(("--output",), type=Path, metavar="FILE", help="write it there (default: stdout)"),
            REGISTRY,
        ),
    ),
    Verb(
        "deploy",
        help="deploy a channel (or a release) to one target with its strategy (blue-green behind the edge by "
        "default): plan, pull, start beside the old, check, switch, drain; the old one stays on any failure",
        example="shipyard deploy --target mainpc --channel stable --dry-run",
        args=DeployArgs,
        run=cmd_deploy,
        options=(WHAT_RELEASE, TARGET, WHAT_CHANNEL, DRY_RUN, LOCK_WAIT, REGISTRY),
    ),
    Verb(
        "rollout",
        help="deploy a channel to every target: canary targets first, then batches; stops at the first failure",
        example="shipyard rollout --channel stable --batch-size 2",
        args=RolloutArgs,
        run=cmd_rollout,
        options=(
            CHANNEL,
            Option(("--batch-size",), type=int, default=1, metavar="N", help="non-canary targets deployed at a time"),
            TARGETS,
            DRY_RUN,
            LOCK_WAIT,
            REGISTRY,
        ),
    ),
    Verb(
        "deployments",
        help="a target's deployment ledger, from the registry: who deployed what, when, and how it went",
        example="shipyard deployments --target mainpc",
        args=TargetArgs,
        run=cmd_deployments,
        options=(TARGET, REGISTRY),
    ),
)
