"""What a unit's build is prepared from: the release's plan, the unit's buildx args, its rendered
Dockerfile, and what verify and canary will hold the pushed image to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config.project import Project
from ..state import make_dirs
from .labels import unit_labels
from .options import BuildContext, BuildOptions
from .plan import BuildUnit, Plan, make_plan
from .render import BASE_IMAGE_ARG, RenderInputs, TemplateRenderer
from .revision import Revision


def plan_for(project: Project, revision: Revision, options: BuildOptions) -> Plan:
    return make_plan(
        project.profiles,
        project.catalog,
        release_tag=revision.release_tag,
        target=options.target,
        only_profiles=options.profiles,
        only_images=options.images,
    )


def request_build_args(unit: BuildUnit, parent: str, revision: Revision) -> dict[str, str]:
    """What a build of ``unit`` passes to buildx (and the bake file): the unit's build args; for a plain
    Dockerfile its parent as BASE_IMAGE (``FROM ${BASE_IMAGE}``); and SOURCE_DATE_EPOCH, the commit's
    time, by which BuildKit dates the image config and its history, so a rebuild from cache of the same
    commit gives the same platform manifest (the index still differs: its provenance records the build).
    Not an input: a new commit with the same inputs reuses."""
    args = unit.build_args if unit.image.dockerfile is None else {**unit.build_args, BASE_IMAGE_ARG: parent}
    return {**args, "SOURCE_DATE_EPOCH": str(int(revision.committed.timestamp()))}


def expectations(ctx: BuildContext, unit: BuildUnit, labels: Mapping[str, str]) -> dict[str, Any]:
    """What verify and canary will hold the pushed image to (see UnitRecord.expect): the policy the image
    is built with, so a later change to ``[policy]`` does not change the verdict on this release."""
    policy = ctx.project.catalog.policy
    expect: dict[str, Any] = {
        "user": policy.user,
        # a plain Dockerfile sets its own ENV: shipyard only holds it to what its templates write
        "env": {} if unit.image.dockerfile else {**unit.build_args, **unit.profile.env, "PYTHONUNBUFFERED": "1"},
        "labels": dict(labels),
        "required_labels": list(policy.required_labels),
        "port": unit.image.service.port if unit.image.service else None,
        "size_budget_mb": unit.image.size_budget_mb or policy.size_budget_mb,
    }
    if unit.image.skip_checks:
        expect["skip_checks"] = dict(unit.image.skip_checks)
    if unit.image.service is not None:
        expect["service"] = asdict(unit.image.service)
        expect["canary"] = asdict(unit.profile.canary)
    return expect


def render_unit(
    ctx: BuildContext, renderer: TemplateRenderer, unit: BuildUnit, parent: str, labels: Mapping[str, str] | None = None
) -> Path:
    labels = dict(labels or unit_labels(ctx, unit))
    text = renderer.render(RenderInputs(profile=unit.profile, image=unit.image, parent=parent, labels=labels))
    path = ctx.project.work_dir / "rendered" / unit.profile.name / unit.image.name / "Dockerfile"
    make_dirs(path.parent)
    path.write_text(text)
    return path
