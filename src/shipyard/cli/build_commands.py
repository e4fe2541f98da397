"""Build-side commands: plan, render, build, base, bake-file."""

from __future__ import annotations

import argparse
import contextlib
import json

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
from ..oci.credentials import credentials_for
from ..oci.reference import RegistryTarget
from ..preflight import check_engine, check_registry
from ..runner import Runner
from .console import Console, print_summary
from .key_commands import key_password
from .shared import _reachable_registry, _registry, _target


def cmd_plan(args: argparse.Namespace, console: Console) -> int:
    project = load_project(args.project, base_override=args.base_override)
    revision = read_revision(project.root, allow_dirty=True)
    plan = plan_for(project, revision, BuildOptions(target=_target(args), profiles=args.profile, images=args.image))
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


def cmd_build(args: argparse.Namespace, console: Console) -> int:
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


def cmd_base(args: argparse.Namespace, console: Console) -> int:
    target = _target(args)
    runner = Runner(echo=console.command)
    check_engine(runner, console.event)
    registry = _reachable_registry(target, console)
    bases = LocalBases(target, registry, runner, cache_dir(), console.event)
    platforms = tuple(args.platform) or DEFAULT_PLATFORMS
    refs = {name: bases.ensure(name, platforms=platforms, rebuild=args.rebuild) for name in LOCAL_BASES}
    for ref in refs.values():
        console.line(ref)
    if args.json:
        console.data(json.dumps({"bases": refs}, indent=2))
    return 0


def cmd_bake_file(args: argparse.Namespace, console: Console) -> int:
    ctx, target = _context(args, console)
    options = BuildOptions(target=target, profiles=args.profile, images=args.image)
    path = write_bake_file(ctx, options, args.output)
    console.line(f"wrote {path}; build it with: docker buildx bake -f {path}")
    if args.json:
        console.data(json.dumps({"path": str(path)}))
    return 0
