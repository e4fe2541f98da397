"""The CLI's commands: each turns parsed arguments into one stage of the pipeline."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from importlib import resources
from pathlib import Path

from .build.bake import write_bake_file
from .build.base import LOCAL_BASES, LocalBases
from .build.pipeline import BuildContext, BuildOptions, build_release, plan_for, render_unit
from .build.render import TemplateRenderer
from .console import Console, print_canary_summary, print_scan_summary, print_summary, print_verify_failures, table
from .credentials import credentials_for, docker_login
from .errors import ConfigError, VerifyFailed
from .gitinfo import read_revision
from .preflight import check_engine, check_registry
from .project import cache_dir, load_project
from .release.canary import canary_release
from .release.findings import GatePolicy, load_allowlist
from .release.ledger import load_ledger
from .release.promote import Promoter, check_channel
from .release.record import ReleaseRecord, find_record, load_record
from .release.registry import RegistryClient
from .release.scan import ScanOptions, scan_release
from .release.trivy_db import push_db
from .release.verify import verify_release
from .runner import Runner
from .target import RegistryTarget, parse_target


def run_script(name: str) -> int:
    script = resources.files("shipyard") / "resources" / name
    with resources.as_file(script) as path:
        return subprocess.call(["bash", str(path)])


def _target(args: argparse.Namespace) -> RegistryTarget:
    return parse_target(getattr(args, "registry", None))


def _registry(target: RegistryTarget) -> RegistryClient:
    return RegistryClient(target, credentials_for(target))


def _release(args: argparse.Namespace) -> tuple[Path, Path, ReleaseRecord]:
    """The project root, and the path and contents of the release record that --release names."""
    root = args.project.resolve()
    path = find_record(root, args.release)
    return root, path, load_record(path)


def _reachable_registry(target: RegistryTarget, console: Console) -> RegistryClient:
    """A client whose registry answered /v2/ with these credentials: a refusal is one clear error up front."""
    registry = _registry(target)
    check_registry(registry, console.event)
    return registry


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    project = load_project(args.project, base_override=args.base_override)
    revision = read_revision(project.root, allow_dirty=True)
    plan = plan_for(project, revision, BuildOptions(target=_target(args), profiles=args.profile, images=args.image))
    if args.json:
        console.data(
            json.dumps(
                {
                    "release": plan.release_tag,
                    "registry": str(plan.target),
                    "units": [
                        {
                            "key": u.key,
                            "ref": u.ref,
                            "parent": u.parent_unit or (u.base.ref if u.base else None),
                            "cache": u.cache_ref,
                            "platform": u.profile.platform,
                        }
                        for u in plan.units
                    ],
                },
                indent=2,
            )
        )
        return 0
    console.line(f"release {plan.release_tag}{' (tree is dirty)' if revision.dirty else ''} → {plan.target}")
    for unit in plan.units:
        parent = unit.parent_unit or (unit.base.ref if unit.base else "")
        console.line(f"  {unit.key:40} ← {parent}")
    return 0


def _context(
    args: argparse.Namespace, console: Console, *, dry_run: bool = False
) -> tuple[BuildContext, RegistryTarget]:
    project = load_project(args.project, base_override=args.base_override)
    revision = read_revision(project.root, allow_dirty=args.allow_dirty)
    target = _target(args)
    runner = Runner(dry_run=dry_run, echo=console.line if (dry_run or args.verbose) else None)
    ctx = BuildContext(
        project=project,
        revision=revision,
        runner=runner,
        registry=_registry(target),
        cache_dir=cache_dir(),
        emit=console.event,
    )
    return ctx, target


def cmd_render(args: argparse.Namespace, console: Console) -> int:
    args.allow_dirty = True
    ctx, target = _context(args, console)
    plan = plan_for(ctx.project, ctx.revision, BuildOptions(target=target, profiles=args.profile, images=args.image))
    renderer = TemplateRenderer(ctx.project.templates)
    for unit in plan.units:
        parent = plan.unit(unit.parent_unit).ref if unit.parent_unit else (unit.base.ref if unit.base else "")
        path = render_unit(ctx, renderer, unit, parent)
        console.line(f"{unit.key}: {path.relative_to(ctx.project.root)}")
    return 0


def cmd_build(args: argparse.Namespace, console: Console) -> int:
    ctx, target = _context(args, console, dry_run=args.dry_run)
    if not args.dry_run:
        preflight = Runner(echo=console.command)
        check_engine(preflight, console.event)
        creds = credentials_for(target)
        if creds is not None:
            docker_login(preflight, target, creds)
        check_registry(ctx.registry, console.event)
    record = build_release(
        ctx,
        BuildOptions(
            target=target,
            profiles=args.profile,
            images=args.image,
            builder=args.builder,
            jobs=args.jobs,
            reuse=not args.no_reuse,
        ),
    )
    if not args.dry_run:
        print_summary(console, record)
        if args.json:
            console.data(record.to_json())
    return 0


def cmd_base(args: argparse.Namespace, console: Console) -> int:
    target = _target(args)
    runner = Runner(echo=console.command)
    check_engine(runner, console.event)
    registry = _reachable_registry(target, console)
    bases = LocalBases(target, registry, runner, cache_dir(), console.event)
    for name in LOCAL_BASES:
        console.line(bases.ensure(name, rebuild=args.rebuild))
    return 0


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    root, path, record = _release(args)
    target = parse_target(args.registry or record.registry)
    registry = _reachable_registry(target, console)
    console.line(f"verifying {len(record.units)} units of {record.release} in {target} ({path.name})")
    try:
        report = verify_release(root, path, registry, console.event)
    except VerifyFailed:
        print_verify_failures(console, root, record.release)  # every failure, then the one-line error
        raise
    if args.json:
        console.data(report.to_json())
    console.line(f"verify: all {len(report.findings)} checks passed on {len(record.units)} units")
    return 0


def cmd_scan(args: argparse.Namespace, console: Console) -> int:
    root, path, record = _release(args)
    allowlist = args.allowlist
    if allowlist is None and (root / "scan-allowlist.toml").is_file():
        allowlist = root / "scan-allowlist.toml"
    target = parse_target(record.registry)
    options = ScanOptions(
        policy=GatePolicy.parse(args.severity, ignore_unfixed=args.ignore_unfixed),
        allowlist=tuple(load_allowlist(allowlist)),
        db_repository=args.db_repository or os.environ.get("SHIPYARD_TRIVY_DB_REPOSITORY") or None,
        jobs=args.jobs,
        cache_dir=cache_dir() / "trivy",
        credentials=credentials_for(target),
        skip_vulnerabilities=args.skip_vulnerabilities,
    )
    console.line(f"scanning {len(record.units)} units of {record.release} ({args.jobs} in parallel)")
    try:
        verdicts = scan_release(root, path, Runner(echo=console.command), options, console.event)
    finally:
        print_scan_summary(console, load_record(path))
    scope = (
        "secrets and misconfigurations only, vulnerabilities NOT scanned"
        if args.skip_vulnerabilities
        else (args.severity)
    )
    console.line(f"scan: {len(verdicts)} units passed the gate ({scope})")
    return 0


def cmd_trivy_db(args: argparse.Namespace, console: Console) -> int:
    ref = args.to
    location, _, tag = ref.rpartition(":")
    if not location or "/" in tag or not tag:
        raise ConfigError(f"--to: {ref!r}: expected host/repository:tag, e.g. localhost:5000/mirror/trivy-db:2")
    host, _, repository = location.partition("/")
    target = parse_target(f"{host}/{repository}")
    with _reachable_registry(target, console) as registry:
        digest = push_db(registry, repository, tag, args.source)
    console.line(f"pushed Trivy DB {args.source} as {ref}@{digest}; scan with --db-repository {ref}")
    return 0


def cmd_canary(args: argparse.Namespace, console: Console) -> int:
    root, path, record = _release(args)
    console.line(f"canary of {record.release} on profile {args.profile or 'first in the release'}")
    try:
        verdicts = canary_release(path, args.profile, console.event)
    finally:
        print_canary_summary(console, load_record(path))
    console.line(f"canary: {len(verdicts)} service(s) healthy, answering right and within their SLO")
    return 0


def _promoter(target: RegistryTarget, console: Console) -> Promoter:
    return Promoter(_reachable_registry(target, console), target.namespace, console.event)


def cmd_promote(args: argparse.Namespace, console: Console) -> int:
    root, path, record = _release(args)
    unknown = [p for p in args.profile if p not in {u.profile for u in record.units.values()}]
    if unknown:
        raise ConfigError(f"--profile: {unknown[0]!r} is not in release {record.release}")
    units = {k: u for k, u in record.units.items() if not args.profile or u.profile in args.profile}
    target = parse_target(record.registry)
    console.line(f"promoting {record.release} ({len(units)} units) to {args.channel} in {target}")
    _promoter(target, console).promote(record, args.channel, units, force=args.force, reason=args.reason or "")
    return 0


def cmd_rollback(args: argparse.Namespace, console: Console) -> int:
    target = _target(args)
    entry = _promoter(target, console).rollback(args.channel)
    console.line(f"{args.channel} is back on {entry.release} ({len(entry.digests)} units)")
    return 0


def cmd_history(args: argparse.Namespace, console: Console) -> int:
    target = _target(args)
    ledger = load_ledger(_reachable_registry(target, console), target.namespace, check_channel(args.channel))
    if args.json:
        console.data(ledger.to_json().decode())
        return 0
    if not ledger.entries:
        console.line(f"{args.channel}: no promotions yet in {target}")
        return 0
    rows: list[tuple[str, ...]] = [("when", "who", "action", "release", "units", "state", "note")]
    for e in ledger.entries:
        note = ("FORCED: " if e.forced else "") + e.reason
        rows.append((e.at, e.by[:30], e.action, e.release, str(len(e.digests)), e.state, note[:50]))
    table(console, rows)
    return 0


def cmd_bake_file(args: argparse.Namespace, console: Console) -> int:
    ctx, target = _context(args, console)
    options = BuildOptions(target=target, profiles=args.profile, images=args.image)
    path = write_bake_file(ctx, options, args.output)
    console.line(f"wrote {path}; build it with: docker buildx bake -f {path}")
    return 0
