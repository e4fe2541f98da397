"""The plan as a ``docker-bake.json``, for people who want ``docker buildx bake``.

Same targets, build args, tags, platforms, registry cache and named contexts as
``shipyard build``; a child's parent is the named context ``shipyard-parent`` pointing at
the parent's bake target (``target:…``), so bake builds the DAG in one invocation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..state import make_dirs
from .base import LocalBases
from .contexts import Wheelhouse, prepare_tools
from .labels import unit_labels
from .options import BuildContext, BuildOptions
from .plan import BuildUnit
from .prepare import plan_for, request_build_args
from .render import RenderInputs, TemplateRenderer

PARENT_CONTEXT = "shipyard-parent"


def target_name(unit: BuildUnit) -> str:
    return f"{unit.profile.name}-{unit.image.name}".replace(".", "-")


def bake_document(ctx: BuildContext, options: BuildOptions) -> dict[str, Any]:
    plan = plan_for(ctx.project, ctx.revision, options)
    renderer = TemplateRenderer.for_project(ctx.project.templates, ctx.project.catalog.policy)
    bases = LocalBases(plan.target, ctx.registry, ctx.runner, ctx.cache_dir, ctx.emit)
    wheelhouse = Wheelhouse(ctx.cache_dir, ctx.runner)
    base_refs: dict[str, str] = {}
    targets: dict[str, Any] = {}
    for unit in plan.units:
        tools = prepare_tools(ctx.cache_dir, unit.profile.platforms, runner=ctx.runner)
        contexts: dict[str, str] = {"tools": str(tools)}
        if unit.image.lock is not None:
            wheels = wheelhouse.prepare_all(unit.image.lock, unit.profile.python_version, unit.profile.platforms)
            contexts["wheels"] = str(wheels)
        if unit.base is not None:
            if unit.base_key not in base_refs:
                local = unit.base.is_local
                base_refs[unit.base_key] = (
                    bases.ensure(unit.base.local_name, platforms=unit.profile.platforms) if local else unit.base.ref
                )
            parent = base_refs[unit.base_key]
        else:
            assert unit.parent_unit is not None
            parent = PARENT_CONTEXT
            contexts[PARENT_CONTEXT] = "target:" + target_name(plan.unit(unit.parent_unit))
        text = renderer.render(RenderInputs(unit.profile, unit.image, parent, unit_labels(ctx, unit)))
        dockerfile = ctx.project.work_dir / "bake" / unit.profile.name / unit.image.name / "Dockerfile"
        make_dirs(dockerfile.parent)
        dockerfile.write_text(text)
        targets[target_name(unit)] = {
            "context": str(unit.image.context),
            "dockerfile": str(dockerfile),
            "args": request_build_args(unit, parent, ctx.revision),
            "tags": [unit.ref, *(f"{unit.repository}:{alias}" for alias in ctx.revision.aliases)],
            "platforms": list(unit.profile.platforms),
            "contexts": contexts,
            "cache-from": [f"type=registry,ref={unit.cache_ref}"],
            "cache-to": [f"type=registry,ref={unit.cache_ref},mode=max,oci-mediatypes=true,image-manifest=true"],
            "output": ["type=image,push=true"],
            "attest": ["type=provenance,mode=max"],
        }
        if unit.image.build_secrets:
            targets[target_name(unit)]["secret"] = [f"id={n},env={n}" for n in unit.image.build_secrets]
    return {"group": {"default": {"targets": list(targets)}}, "target": targets}


def write_bake_file(ctx: BuildContext, options: BuildOptions, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bake_document(ctx, options), indent=2) + "\n")
    return path
