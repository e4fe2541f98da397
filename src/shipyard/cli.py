"""The ``shipyard`` command: the same code the nox sessions run, without nox."""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from . import __version__
from .build.base import LocalBases
from .build.pipeline import BuildContext, BuildOptions, build_release, plan_for, render_unit
from .build.render import TemplateRenderer
from .credentials import credentials_for, docker_login
from .errors import ConfigError, ShipyardError, VerifyFailed
from .events import Event
from .gitinfo import read_revision
from .preflight import check_engine, check_registry
from .project import cache_dir, load_project
from .release.findings import GatePolicy, load_allowlist
from .release.record import ReleaseRecord, find_record, load_record, reports_dir
from .release.registry import RegistryClient
from .release.scan import ScanOptions, scan_release
from .release.trivy_db import push_db
from .release.verify import verify_release
from .runner import Runner
from .target import RegistryTarget, parse_target


class Console:
    """Renders events as plain lines (CI-friendly); -q keeps only results, -v adds commands."""

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        print(text, flush=True)

    def event(self, event: Event) -> None:
        if event.kind == "build.output":
            if self.verbosity > 1:
                self.line(f"  {event.unit} | {event.message}")
            return
        if self.verbosity < 0 and event.kind not in ("unit.built", "record"):
            return
        self.line(f"[{time.monotonic() - self.started:6.1f}s] {event.message}")

    def command(self, text: str) -> None:
        if self.verbosity > 0:
            self.line(text)


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME",
        help="only this profile (repeatable; default: every profile in profiles/)",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="NAME",
        help="only this image and its parents (repeatable; default: the whole catalog)",
    )
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="where images go, e.g. ghcr.io/acme (env SHIPYARD_REGISTRY; default localhost:5000/shipyard)",
    )
    p.add_argument(
        "--base-override",
        metavar="local|ROLE=REF",
        help="replace profile bases: 'local' builds every profile on the local base (env SHIPYARD_BASE_OVERRIDE)",
    )
    p.add_argument(
        "--allow-dirty", action="store_true", help="build an uncommitted tree, tagged YYYYMMDD-<sha>-dirty-<hash>"
    )


def _add_common(parser: argparse.ArgumentParser, default: object) -> None:
    """-v/-q/--project work before and after the subcommand (SUPPRESS keeps the top-level value)."""
    parser.add_argument(
        "--project",
        type=Path,
        default=Path.cwd() if default is None else default,
        metavar="DIR",
        help="the repository with shipyard.toml, profiles/ and dockerfiles/ (default: .)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="show every command run (-vv: and buildx output)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=False if default is None else default, help="only results"
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shipyard",
        description="Build, push and release the container images of ML inference services.",
        epilog="example: shipyard build --profile cpu --image model-ops-coordinator -v",
    )
    parser.add_argument("--version", action="version", version=f"shipyard {__version__}")
    _add_common(parser, None)
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = functools.partial(sub.add_parser, parents=[common])

    add("up", help="install and start the Docker engine and the local registry (idempotent)")
    add("down", help="stop the local registry and the engine started by `up`")
    p = add("base", help="build and push the local base images (mmdebstrap)")
    p.add_argument("--registry", metavar="HOST/NAMESPACE")
    p.add_argument("--rebuild", action="store_true", help="build even when the registry has it")
    p = add(
        "plan",
        help="print the build units in order, with their tags",
        epilog="example: shipyard plan --profile pc2 --json",
    )
    _add_selection(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("render", help="render the Dockerfiles of the plan into .shipyard/rendered/")
    _add_selection(p)
    p = add(
        "build",
        help="render, build with buildx (registry cache), push and write the release record",
        epilog="example: shipyard build --registry ghcr.io/acme --base-override local",
    )
    _add_selection(p)
    p.add_argument("--builder", metavar="NAME", help="buildx builder to use (default: the current one)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the exact commands; run nothing")
    p.add_argument("--json", action="store_true", help="print the release record as JSON at the end")
    p = add(
        "verify",
        help="check every pushed image of a release from the registry (no pull)",
        epilog="example: shipyard verify --release 20250111-656873b3",
    )
    p.add_argument("--release", metavar="TAG", help="the release to verify (default: the newest record)")
    p.add_argument("--registry", metavar="HOST/NAMESPACE", help="registry of the release (default: the record's)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = add(
        "scan",
        help="scan every image of a release with Trivy and gate on severity",
        epilog="example: shipyard scan --db-repository localhost:5000/mirror/trivy-db:2 --severity CRITICAL",
    )
    p.add_argument("--release", metavar="TAG", help="the release to scan (default: the newest record)")
    p.add_argument(
        "--severity",
        default="CRITICAL,HIGH:fixed",
        metavar="LIST",
        help="severities that fail the gate; ':fixed' = only when a fix exists (default: %(default)s)",
    )
    p.add_argument("--ignore-unfixed", action="store_true", help="vulnerabilities without a fix never fail the gate")
    p.add_argument(
        "--allowlist",
        type=Path,
        metavar="FILE",
        help="[[allow]] entries with id, reason, expires (default: scan-allowlist.toml if present)",
    )
    p.add_argument(
        "--db-repository",
        metavar="REF",
        help="OCI ref of the Trivy DB (env SHIPYARD_TRIVY_DB_REPOSITORY; default: Trivy's public one)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="trivy processes in parallel (default: %(default)s)",
    )
    p = add(
        "trivy-db",
        help="mirror a Trivy vulnerability DB into an OCI registry (air-gapped sites)",
        epilog="example: shipyard trivy-db push ~/.cache/trivy/db --to localhost:5000/mirror/trivy-db:2",
    )
    p.add_argument("action", choices=["push"])
    p.add_argument("source", type=Path, help="a directory with trivy.db and metadata.json, or a .tar.gz of them")
    p.add_argument("--to", required=True, metavar="HOST/REPO:TAG", help="where to push it")
    return parser


def run_script(name: str) -> int:
    script = resources.files("shipyard") / "resources" / name
    with resources.as_file(script) as path:
        return subprocess.call(["bash", str(path)])


def _target(args: argparse.Namespace) -> RegistryTarget:
    return parse_target(getattr(args, "registry", None))


def _registry(target: RegistryTarget) -> RegistryClient:
    return RegistryClient(target, credentials_for(target))


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    project = load_project(args.project, base_override=args.base_override)
    revision = read_revision(project.root, allow_dirty=True)
    plan = plan_for(project, revision, BuildOptions(target=_target(args), profiles=args.profile, images=args.image))
    if args.json:
        console.line(
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
        ctx, BuildOptions(target=target, profiles=args.profile, images=args.image, builder=args.builder)
    )
    if not args.dry_run:
        print_summary(console, record)
        if args.json:
            console.line(record.to_json())
    return 0


def cmd_base(args: argparse.Namespace, console: Console) -> int:
    target = _target(args)
    runner = Runner(echo=console.command)
    check_engine(runner, console.event)
    registry = _registry(target)
    check_registry(registry, console.event)
    from .build.base import LOCAL_BASES

    bases = LocalBases(target, registry, runner, cache_dir(), console.event)
    for name in LOCAL_BASES:
        console.line(bases.ensure(name, rebuild=args.rebuild))
    return 0


def print_summary(console: Console, record: ReleaseRecord) -> None:
    rows: list[tuple[str, ...]] = [("unit", "digest", "size", "cached", "time")]
    for key, unit in record.units.items():
        rows.append(
            (
                key,
                unit.digest[:19],
                f"{unit.size / 1e6:.1f} MB",
                f"{unit.cache_hits}/{unit.steps}",
                f"{unit.duration_s:.1f}s",
            )
        )
    console.line("")
    _table(console, rows)
    total = sum(u.duration_s for u in record.units.values())
    console.line(
        f"\n{len(record.units)} units pushed as {record.release} to {record.registry} (build time {total:.1f}s)"
    )


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    root = args.project.resolve()
    path = find_record(root, args.release)
    record = load_record(path)
    target = parse_target(args.registry or record.registry)
    registry = _registry(target)
    console.line(f"verifying {len(record.units)} units of {record.release} in {target} ({path.name})")
    try:
        report = verify_release(root, path, registry, console.event)
    except VerifyFailed:
        _print_verify_failures(console, root, record.release)  # every failure, then the one-line error
        raise
    if args.json:
        console.line(report.to_json())
    console.line(f"verify: all {len(report.findings)} checks passed on {len(record.units)} units")
    return 0


def _print_verify_failures(console: Console, root: Path, release: str) -> None:
    data = json.loads((reports_dir(root, release) / "verify.json").read_text())
    rows: list[tuple[str, ...]] = [("unit", "check", "expected", "found")]
    rows += [
        (f["unit"], f["check"], f["expected"][:60], f["found"][:70]) for f in data["findings"] if f["status"] == "fail"
    ]
    _table(console, rows)


def _table(console: Console, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        console.line("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            console.line("  ".join("-" * w for w in widths))


def cmd_scan(args: argparse.Namespace, console: Console) -> int:
    root = args.project.resolve()
    path = find_record(root, args.release)
    record = load_record(path)
    if args.jobs < 1:
        raise ConfigError(f"--jobs: expected a positive number, got {args.jobs}")
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
    )
    console.line(f"scanning {len(record.units)} units of {record.release} ({args.jobs} in parallel)")
    try:
        verdicts = scan_release(root, path, Runner(echo=console.command), options, console.event)
    finally:
        _print_scan_summary(console, load_record(path))
    console.line(f"scan: {len(verdicts)} units passed the gate ({args.severity})")
    return 0


def _print_scan_summary(console: Console, record: ReleaseRecord) -> None:
    rows: list[tuple[str, ...]] = [("unit", "critical", "high", "medium", "low", "secrets", "verdict")]
    for key, unit in record.units.items():
        scan = unit.verdicts.get("scan")
        if not scan:
            continue
        c = scan["counts"]
        verdict = "pass" if scan["passed"] else "FAIL " + ",".join(scan["blocking"][:3])
        rows.append(
            (key, str(c["CRITICAL"]), str(c["HIGH"]), str(c["MEDIUM"]), str(c["LOW"]), str(scan["secrets"]), verdict)
        )
    if len(rows) > 1:
        _table(console, rows)


def cmd_trivy_db(args: argparse.Namespace, console: Console) -> int:
    ref = args.to
    location, _, tag = ref.rpartition(":")
    if not location or "/" in tag or not tag:
        raise ConfigError(f"--to: {ref!r}: expected host/repository:tag, e.g. localhost:5000/mirror/trivy-db:2")
    host, _, repository = location.partition("/")
    target = parse_target(f"{host}/{repository}")
    with _registry(target) as registry:
        digest = push_db(registry, repository, tag, args.source)
    console.line(f"pushed Trivy DB {args.source} as {ref}@{digest}; scan with --db-repository {ref}")
    return 0


COMMANDS = {
    "plan": cmd_plan,
    "render": cmd_render,
    "build": cmd_build,
    "base": cmd_base,
    "verify": cmd_verify,
    "scan": cmd_scan,
    "trivy-db": cmd_trivy_db,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    console = Console(-1 if args.quiet else args.verbose)
    if args.command in ("up", "down"):
        return run_script(f"{args.command}.sh")
    try:
        return COMMANDS[args.command](args, console)
    except ShipyardError as exc:
        first, *rest = str(exc).splitlines() or [type(exc).__name__]
        print(f"shipyard: error: {first}", file=sys.stderr)
        for line in rest:
            print(f"  {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("shipyard: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
