"""plan → render → build/push → release record, one unit after another in DAG order."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BuildError, CommandFailed
from ..events import Emit, Event
from ..gitinfo import Revision
from ..project import Project
from ..release.record import ReleaseRecord, UnitRecord, load_record, records_dir, save_record
from ..release.registry import RegistryClient
from ..runner import Runner
from ..target import RegistryTarget
from .base import LocalBases
from .buildx import BuildProgress, BuildRequest, read_metadata
from .contexts import Wheelhouse, prepare_tools
from .plan import BuildUnit, Plan, make_plan
from .render import APP_UID, RenderInputs, TemplateRenderer, oci_labels


@dataclass(frozen=True)
class BuildOptions:
    target: RegistryTarget
    profiles: Sequence[str] = ()
    images: Sequence[str] = ()
    builder: str | None = None


@dataclass
class BuildContext:
    """Everything a build needs from outside: injected so tests can replace any part."""

    project: Project
    revision: Revision
    runner: Runner
    registry: RegistryClient
    cache_dir: Path
    emit: Emit
    rendered: dict[str, Path] = field(default_factory=dict)


def plan_for(project: Project, revision: Revision, options: BuildOptions) -> Plan:
    return make_plan(
        project.profiles,
        project.catalog,
        release_tag=revision.release_tag,
        target=options.target,
        only_profiles=options.profiles,
        only_images=options.images,
    )


def unit_labels(ctx: BuildContext, unit: BuildUnit) -> dict[str, str]:
    return oci_labels(
        profile=unit.profile.name,
        image=unit.image.name,
        revision=ctx.revision.sha,
        created=ctx.revision.created,
        source=ctx.project.catalog.source or ctx.project.catalog.project_name,
        version=unit.tag,
        title=unit.image.name,
    )


def expectations(ctx: BuildContext, unit: BuildUnit) -> dict[str, Any]:
    """What verify and canary will hold the pushed image to (see UnitRecord.expect)."""
    expect: dict[str, Any] = {
        "user": f"{APP_UID}:{APP_UID}",
        "env": {**unit.profile.build_args, **unit.profile.env, "PYTHONUNBUFFERED": "1"},
        "labels": unit_labels(ctx, unit),
        "port": unit.image.service.port if unit.image.service else None,
        "size_budget_mb": unit.image.size_budget_mb,
    }
    if unit.image.service is not None:
        expect["service"] = asdict(unit.image.service)
        expect["canary"] = asdict(unit.profile.canary)
    return expect


def render_unit(ctx: BuildContext, renderer: TemplateRenderer, unit: BuildUnit, parent: str) -> Path:
    labels = unit_labels(ctx, unit)
    text = renderer.render(RenderInputs(profile=unit.profile, image=unit.image, parent=parent, labels=labels))
    path = ctx.project.work_dir / "rendered" / unit.profile.name / unit.image.name / "Dockerfile"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def build_release(ctx: BuildContext, options: BuildOptions) -> ReleaseRecord:
    plan = plan_for(ctx.project, ctx.revision, options)
    dry = ctx.runner.dry_run
    ctx.emit(
        Event(
            "plan",
            f"release {plan.release_tag}: {len(plan.units)} units ({', '.join(plan.profiles)}) → {plan.target}",
            data={"units": [u.key for u in plan.units], "release": plan.release_tag},
        )
    )
    renderer = TemplateRenderer(ctx.project.templates)
    bases = LocalBases(plan.target, ctx.registry, ctx.runner, ctx.cache_dir, ctx.emit)
    wheelhouse = Wheelhouse(ctx.cache_dir, ctx.runner)
    record = _start_record(ctx, plan)
    base_refs: dict[str, str] = {}
    for index, unit in enumerate(plan.units, 1):
        if unit.base is not None:
            if unit.base.ref not in base_refs:
                base_refs[unit.base.ref] = bases.ensure(unit.base.local_name) if unit.base.is_local else unit.base.ref
            parent = base_refs[unit.base.ref]
        else:
            assert unit.parent_unit is not None
            parent_record = record.units.get(unit.parent_unit)
            parent = parent_record.ref if parent_record else f"{plan.unit(unit.parent_unit).repository}@<digest>"
        ctx.emit(Event("unit.started", f"[{index}/{len(plan.units)}] {unit.key}: building", unit=unit.key))
        started = time.monotonic()
        dockerfile = render_unit(ctx, renderer, unit, parent)
        contexts = {"tools": prepare_tools(ctx.cache_dir, unit.profile.platform)}
        if unit.image.lock is not None:
            contexts["wheels"], _ = wheelhouse.prepare(
                unit.image.lock, unit.profile.python_version, unit.profile.platform
            )
        metadata = dockerfile.with_name("metadata.json")
        metadata.unlink(missing_ok=True)
        request = BuildRequest(
            context=unit.image.context,
            dockerfile=dockerfile,
            tag=unit.ref,
            platform=unit.profile.platform,
            cache_ref=unit.cache_ref,
            metadata_file=metadata,
            build_args=dict(unit.profile.build_args),
            build_contexts=contexts,
            builder=options.builder,
        )
        progress = BuildProgress()
        try:
            ctx.runner.run(request.argv(), on_line=_reader(ctx, unit, progress))
        except CommandFailed as exc:
            last = "\n".join(exc.output.splitlines()[-15:])
            raise BuildError(
                f"{unit.key}: docker buildx build failed (exit {exc.returncode}) at "
                f"{progress.current or 'start'}\n{last}"
            ) from None
        if dry:
            continue
        digest = read_metadata(metadata)
        manifest = ctx.registry.image_manifest(unit.repository_path, digest, unit.profile.platform)
        size = manifest.compressed_size if manifest else 0
        duration = time.monotonic() - started
        record.units[unit.key] = UnitRecord(
            profile=unit.profile.name,
            image=unit.image.name,
            kind=unit.image.kind,
            platform=unit.profile.platform,
            repository=unit.repository,
            tag=unit.tag,
            digest=digest,
            size=size,
            parent=parent,
            duration_s=round(duration, 2),
            steps=len(progress.build_steps),
            cache_hits=progress.cache_hits,
            expect=expectations(ctx, unit),
        )
        ctx.emit(
            Event(
                "unit.built",
                f"[{index}/{len(plan.units)}] {unit.key}: {_outcome(progress)} in {duration:.1f}s, "
                f"{progress.cache_hits}/{len(progress.build_steps)} steps cached, {digest[:19]}",
                unit=unit.key,
                data={"record": record.units[unit.key]},
            )
        )
    if not dry:
        path = save_record(ctx.project.root, record)
        ctx.emit(Event("record", f"release record: {path}", data={"path": str(path)}))
    return record


def _start_record(ctx: BuildContext, plan: Plan) -> ReleaseRecord:
    """A new record, or the existing one of this release: building a subset adds to it, never drops units."""
    fresh = ReleaseRecord(
        release=plan.release_tag, revision=ctx.revision.sha, created=ctx.revision.created, registry=str(plan.target)
    )
    path = records_dir(ctx.project.root) / f"{plan.release_tag}.json"
    if not path.is_file():
        return fresh
    existing = load_record(path)
    if (existing.revision, existing.registry) != (fresh.revision, fresh.registry):
        return fresh
    return existing


def _reader(ctx: BuildContext, unit: BuildUnit, progress: BuildProgress) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        progress.feed(line)
        ctx.emit(Event("build.output", line, unit=unit.key))

    return on_line


def _outcome(progress: BuildProgress) -> str:
    """'cached' when every layer step came from the build cache, else 'built'."""
    steps = progress.build_steps
    return "cached" if steps and progress.cache_hits == len(steps) else "built"
