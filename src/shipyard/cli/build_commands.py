"""The build-side verbs, each with its options, help and handler: base, plan, render, build, bake-file."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, replace
from pathlib import Path

from ..build import default_jobs
from ..build.bake import write_bake_file
from ..build.base import DEFAULT_PLATFORMS, LOCAL_BASES, LocalBases
from ..build.buildx import docker_login
from ..build.models import plan_models
from ..build.options import BuildContext, BuildOptions
from ..build.pipeline import build_release
from ..build.prepare import plan_for, render_unit
from ..build.render import TemplateRenderer, check_templates
from ..build.revision import read_revision
from ..config.keys import resolve_keys
from ..config.project import cache_dir, load_project
from ..config.registry import parse_registry
from ..oci.credentials import credentials_for
from ..oci.reference import RegistryNamespace
from ..preflight import check_engine, check_registry
from ..runner import Runner
from .console import Console, print_summary
from .key_commands import key_password
from .options import DRY_RUN, IMAGES, PROFILES, REGISTRY, SELECTION, Arguments, Option, positive
from .shared import reachable_registry, registry_client
from .verb import Verb

BASE_OVERRIDE = Option(
    ("--base-override",),
    metavar="local|ROLE=REF",
    help="replace profile bases: 'local' builds every profile on the local base (env SHIPYARD_BASE_OVERRIDE)",
    group=SELECTION,
)
ALLOW_DIRTY = Option(
    ("--allow-dirty",),
    action="store_true",
    help="build an uncommitted tree, tagged YYYYMMDD-<sha>-dirty-<hash>",
    group=SELECTION,
)
UNITS = (PROFILES, IMAGES, REGISTRY, BASE_OVERRIDE, ALLOW_DIRTY)  # which build units, and where they go


@dataclass(frozen=True, kw_only=True)
class UnitsArgs(Arguments):
    """The selection of build units (``UNITS``) that plan, render, build and bake-file share."""

    profile: tuple[str, ...]
    image: tuple[str, ...]
    registry: str | None
    base_override: str | None
    allow_dirty: bool


def cmd_plan(args: UnitsArgs, console: Console) -> int:
    project = load_project(args.project, base_override=args.base_override)
    revision = read_revision(project.root, allow_dirty=True)
    options = BuildOptions(target=parse_registry(args.registry), profiles=args.profile, images=args.image)
    plan = plan_for(project, revision, options)
    models = plan_models(project.catalog, plan)
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
                            "platforms": list(u.profile.platforms),
                        }
                        for u in plan.units
                    ],
                    "models": [
                        {
                            "name": m.name,
                            "ref": f"{m.repository}:{m.tag}",
                            "source": m.spec.source,
                            "from": str(m.spec.artifact) if m.spec.artifact else None,
                        }
                        for m in models
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
    for model in models:
        origin = model.spec.artifact or (model.spec.path and model.spec.path.relative_to(project.root).as_posix())
        console.line(f"  {'models/' + model.name:40} ← {origin}")
    return 0


def _context(args: UnitsArgs, console: Console, *, dry_run: bool = False) -> tuple[BuildContext, RegistryNamespace]:
    project = load_project(args.project, base_override=args.base_override)
    revision = read_revision(project.root, allow_dirty=args.allow_dirty)
    target = parse_registry(args.registry)
    runner = Runner(dry_run=dry_run, echo=console.line if (dry_run or args.verbose) else None)
    ctx = BuildContext(
        project=project,
        revision=revision,
        runner=runner,
        registry=registry_client(target),
        cache_dir=cache_dir(),
        emit=console.event,
    )
    return ctx, target


def cmd_render(args: UnitsArgs, console: Console) -> int:
    ctx, target = _context(replace(args, allow_dirty=True), console)
    plan = plan_for(ctx.project, ctx.revision, BuildOptions(target=target, profiles=args.profile, images=args.image))
    renderer = TemplateRenderer.for_project(ctx.project.templates, ctx.project.catalog.policy)
    rendered = {}
    for unit in plan.units:
        parent = plan.unit(unit.parent_unit).ref if unit.parent_unit else (unit.base.ref if unit.base else "")
        path = render_unit(ctx, renderer, unit, parent)
        rendered[unit.key] = str(path.relative_to(ctx.project.root))
        console.line(f"{unit.key}: {rendered[unit.key]}")
    if args.json:
        console.data(json.dumps({"release": plan.release_tag, "rendered": rendered}, indent=2))
    return 0


@dataclass(frozen=True, kw_only=True)
class BuildArgs(UnitsArgs):
    builder: str | None
    jobs: int
    no_reuse: bool
    no_attest: bool
    dry_run: bool


def cmd_build(args: BuildArgs, console: Console) -> int:
    ctx, target = _context(args, console, dry_run=args.dry_run)
    # every template rendered first: a template error is a config error, before any base or parent is built
    plan = plan_for(ctx.project, ctx.revision, BuildOptions(target=target, profiles=args.profile, images=args.image))
    check_templates(
        TemplateRenderer.for_project(ctx.project.templates, ctx.project.catalog.policy),
        ((u.profile, u.image) for u in plan.units),
    )
    if not args.dry_run:
        creds = credentials_for(target)
        ctx.credentials = creds  # Trivy reads the pushed images for their SBOMs
        keys = resolve_keys(ctx.project.catalog.trusted_keys, target, password=key_password, need_signer=True)
        ctx.signer = keys.signer
        if keys.development:
            console.info(f"signing with this machine's development key (trusted for {target.host} only)")
        check_registry(ctx.registry, console.event)

        def engine_ready() -> None:  # only once something really has to be built
            preflight = Runner(echo=console.command)
            check_engine(preflight, console.event)
            if creds is not None:
                docker_login(preflight, target, creds)

        ctx.before_first_build = engine_ready
    with contextlib.nullcontext() if args.dry_run else console.live_build():
        record = build_release(
            ctx,
            BuildOptions(
                target=target,
                profiles=args.profile,
                images=args.image,
                builder=args.builder,
                jobs=args.jobs,
                reuse=not args.no_reuse,
                attest=not args.no_attest,
            ),
        )
    if args.dry_run:
        if args.json:  # nothing was built: the plan's exact commands instead of a record
            console.data(json.dumps({"release": record.release, "dry_run": True, "commands": ctx.runner.history}))
        return 0
    print_summary(console, record, ran={unit.key for unit in plan.units})
    console.summarize(record, "build")
    if args.json:
        console.data(record.to_json())
    return 0


@dataclass(frozen=True, kw_only=True)
class BaseArgs(Arguments):
    registry: str | None
    rebuild: bool
    platform: tuple[str, ...]


def cmd_base(args: BaseArgs, console: Console) -> int:
    target = parse_registry(args.registry)
    runner = Runner(echo=console.command)
    check_engine(runner, console.event)
    registry = reachable_registry(target, console)
    bases = LocalBases(target, registry, runner, cache_dir(), console.event)
    platforms = tuple(args.platform) or DEFAULT_PLATFORMS
    refs = {name: bases.ensure(name, platforms=platforms, rebuild=args.rebuild) for name in LOCAL_BASES}
    for ref in refs.values():
        console.line(ref)
    if args.json:
        console.data(json.dumps({"bases": refs}, indent=2))
    return 0


@dataclass(frozen=True, kw_only=True)
class BakeFileArgs(UnitsArgs):
    output: Path


def cmd_bake_file(args: BakeFileArgs, console: Console) -> int:
    ctx, target = _context(args, console)
    options = BuildOptions(target=target, profiles=args.profile, images=args.image)
    path = write_bake_file(ctx, options, args.output)
    console.line(f"wrote {path}; build it with: docker buildx bake -f {path}")
    if args.json:
        console.data(json.dumps({"path": str(path)}))
    return 0


VERBS = (
    Verb(
        "base",
        help="build and push the local base images (mmdebstrap)",
        example="shipyard base --registry localhost:5000/shipyard --rebuild",
        args=BaseArgs,
        run=cmd_base,
        options=(
            REGISTRY,
            Option(("--rebuild",), action="store_true", help="build even when the registry has it"),
            Option(
                ("--platform",),
                action="append",
                default=[],
                choices=("linux/amd64", "linux/arm64"),
                help="the platforms of the base (repeatable; several: one index over an image each; "
                "default linux/amd64)",
            ),
        ),
    ),
    Verb(
        "plan",
        help="print the build units in order, with their tags",
        example="shipyard plan --profile pc2 --json",
        args=UnitsArgs,
        run=cmd_plan,
        options=UNITS,
    ),
    Verb(
        "render",
        help="render the Dockerfiles of the plan into .shipyard/rendered/",
        example="shipyard render --profile mainpc --image family-web",
        args=UnitsArgs,
        run=cmd_render,
        options=UNITS,
    ),
    Verb(
        "build",
        help="render, build with buildx (registry cache), push and write the release record",
        example="shipyard build --registry ghcr.io/acme --base-override local",
        args=BuildArgs,
        run=cmd_build,
        options=(
            *UNITS,
            Option(("--builder",), metavar="NAME", help="buildx builder to use (default: the current one)"),
            Option(
                ("--jobs",),
                type=positive,
                default_factory=default_jobs,
                metavar="N",
                help="units built at once; a unit starts when its parent is done "
                "(default: twice the cores, %(default)s)",
            ),
            Option(
                ("--no-reuse",),
                action="store_true",
                help="build every unit even when the registry has an image with the same inputs",
            ),
            Option(
                ("--no-attest",),
                action="store_true",
                help="push no provenance and no SBOM (units are still signed); verify fails such units, and a "
                "later build rebuilds them rather than reuse them: for measuring and throwaway builds",
            ),
            DRY_RUN,
        ),
    ),
    Verb(
        "bake-file",
        help="write the plan as a docker-bake.json (same targets, args, tags, cache) for docker buildx bake",
        example="shipyard bake-file --output docker-bake.json && docker buildx bake -f docker-bake.json",
        args=BakeFileArgs,
        run=cmd_bake_file,
        options=(
            *UNITS,
            Option(
                ("--output",),
                type=Path,
                default=Path("docker-bake.json"),
                metavar="FILE",
                help="where to write it (default: %(default)s)",
            ),
        ),
    ),
)
