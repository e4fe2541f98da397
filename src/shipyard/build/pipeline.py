"""plan → render → (reuse | build and push) → release record, the DAG scheduled on a bounded pool."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import CATALOG_FILE
from ..credentials import Credentials
from ..errors import BuildError, ConfigError
from ..events import Emit, Event
from ..gitinfo import Revision
from ..project import Project
from ..release.attestations import has_provenance
from ..release.record import ReleaseRecord, UnitRecord, load_record, records_dir, save_record
from ..release.registry import RegistryClient
from ..release.sbom import SbomGenerator
from ..runner import Runner
from ..target import RegistryTarget
from .attest import Attacher, Pushed
from .base import LocalBases
from .buildx import BuildProgress, BuildRequest, read_metadata
from .contexts import Wheelhouse, prepare_tools
from .inputs import InputSet, compute_inputs, why_changed
from .plan import BuildUnit, Plan, make_plan
from .render import APP_UID, RenderInputs, TemplateRenderer, oci_labels
from .retry_build import run_buildx
from .scheduler import run_dag

INPUTS_LABEL = "io.shipyard.inputs"
REUSE_LOOKUPS = 8  # units looked up in the registry at once; builds stay at --jobs
# Labels that name the release rather than the image's content; the input digest ignores them.
RELEASE_LABELS = (
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
    "org.opencontainers.image.version",
    INPUTS_LABEL,
)


@dataclass(frozen=True)
class BuildOptions:
    target: RegistryTarget
    profiles: Sequence[str] = ()
    images: Sequence[str] = ()
    builder: str | None = None
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    reuse: bool = True
    attest: bool = True  # provenance from buildx and our own SBOM referrer (build/attest.py)


@dataclass
class BuildContext:
    """Everything a build needs from outside: injected so tests can replace any part."""

    project: Project
    revision: Revision
    runner: Runner
    registry: RegistryClient
    cache_dir: Path
    emit: Emit
    # Run once, before the first unit that really builds (engine preflight, docker login): a release
    # whose units are all reused needs no engine at all.
    before_first_build: Callable[[], None] | None = None
    credentials: Credentials | None = None  # for Trivy reading the pushed image (SBOM); never in argv


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


def expectations(ctx: BuildContext, unit: BuildUnit, labels: Mapping[str, str]) -> dict[str, Any]:
    """What verify and canary will hold the pushed image to (see UnitRecord.expect)."""
    expect: dict[str, Any] = {
        "user": f"{APP_UID}:{APP_UID}",
        "env": {**unit.profile.build_args, **unit.profile.env, "PYTHONUNBUFFERED": "1"},
        "labels": dict(labels),
        "port": unit.image.service.port if unit.image.service else None,
        "size_budget_mb": unit.image.size_budget_mb,
    }
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
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


class Once:
    """Calls ``fn`` the first time it is called, from whichever thread; later calls wait for it and return."""

    def __init__(self, fn: Callable[[], None] | None) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if not self._done and self._fn is not None:
                self._fn()
            self._done = True


class UnitBuilder:
    """Builds (or reuses) one unit once its parent is done. Called from the scheduler's threads."""

    def __init__(
        self,
        ctx: BuildContext,
        plan: Plan,
        options: BuildOptions,
        base_refs: Mapping[str, str],
        previous_inputs: Mapping[str, Mapping[str, Any]],
        engine_ready: Once,
        attacher: Attacher | None = None,
    ) -> None:
        self.ctx, self.plan, self.options = ctx, plan, options
        self.base_refs = base_refs
        self.previous_inputs = previous_inputs
        self.renderer = TemplateRenderer(ctx.project.templates)
        self.wheelhouse = Wheelhouse(ctx.cache_dir, ctx.runner)
        self.records: dict[str, UnitRecord] = {}
        self._lock = threading.Lock()  # the wheelhouse and tools dirs are shared between units
        # The pool is wider than --jobs so that reuse look-ups (registry round trips) run side by side;
        # this semaphore keeps the number of buildx builds at --jobs.
        self._builds = threading.Semaphore(options.jobs)
        self.engine_ready = engine_ready
        self.attacher = attacher
        self.index = {u.key: i for i, u in enumerate(plan.units, 1)}

    def parent_ref(self, unit: BuildUnit) -> str:
        if unit.base is not None:
            return self.base_refs[unit.base.ref]
        assert unit.parent_unit is not None
        parent = self.records.get(unit.parent_unit)
        return parent.ref if parent else f"{self.plan.unit(unit.parent_unit).repository}@<digest>"

    def _label(self, unit: BuildUnit) -> str:
        return f"[{self.index[unit.key]}/{len(self.plan.units)}] {unit.key}"

    def __call__(self, key: str) -> UnitRecord:
        unit = self.plan.unit(key)
        started = time.monotonic()
        self.ctx.emit(Event("unit.checking", f"{self._label(unit)}: computing its input digest", unit=key))
        parent = self.parent_ref(unit)
        with self._lock:
            contexts = {"tools": prepare_tools(self.ctx.cache_dir, unit.profile.platform)}
            if unit.image.lock is not None:
                contexts["wheels"], _ = self.wheelhouse.prepare(
                    unit.image.lock, unit.profile.python_version, unit.profile.platform
                )
        labels = unit_labels(self.ctx, unit)
        identity = {**labels, **{name: "<release>" for name in RELEASE_LABELS}}
        identity_text = self.renderer.render(RenderInputs(unit.profile, unit.image, parent, identity))
        inputs = compute_inputs(
            dockerfile=identity_text,
            build_args=unit.profile.build_args,
            platform=unit.profile.platform,
            parent=parent,
            context=unit.image.context,
            named_contexts=contexts,
        )
        labels[INPUTS_LABEL] = inputs.digest
        refused = ""
        if self.options.reuse and not self.ctx.runner.dry_run:
            reused = self._reuse(unit, parent, inputs, started)
            if isinstance(reused, UnitRecord):
                return reused
            refused = reused or ""
        reasons = [refused] if refused else why_changed(self.previous_inputs.get(key), inputs)
        self.ctx.emit(
            Event(
                "unit.started",
                f"{self._label(unit)}: building ({'; '.join(reasons)})",
                unit=key,
                data={"reasons": reasons},
            )
        )
        return self._build(unit, parent, labels, contexts, inputs, started)

    def _reuse(self, unit: BuildUnit, parent: str, inputs: InputSet, started: float) -> UnitRecord | str | None:
        """The reused unit's record; else why not (None: no image with these inputs)."""
        registry = self.ctx.registry
        found = registry.manifest(unit.repository_path, inputs.tag)
        if found is None:
            return None
        image = registry.for_platform(unit.repository_path, found, unit.profile.platform)
        if self.attacher is not None and not has_provenance(found, image.digest):
            return "the image with these inputs has no provenance attestation"  # pushed before they were on
        self.ctx.emit(Event("unit.reusing", f"{self._label(unit)}: reusing {inputs.tag}", unit=unit.key))
        registry.put_manifest(unit.repository_path, unit.tag, found.raw, found.media_type)  # server-side re-tag
        config = registry.config_of(unit.repository_path, image)
        labels = dict((config.get("config") or {}).get("Labels") or {})
        image_labels = {k: labels.get(k, v) for k, v in unit_labels(self.ctx, unit).items()}
        record = self._record(
            unit,
            parent,
            inputs,
            started,
            found.digest,
            image.compressed_size,
            image_labels | {INPUTS_LABEL: inputs.digest},
            BuildProgress(),
            reused_from=labels.get("org.opencontainers.image.version", "?"),
        )
        self.records[unit.key] = record
        self._attach(unit, record)
        self.ctx.emit(
            Event(
                "unit.built",
                f"{self._label(unit)}: reused {record.reused_from} "
                f"({found.digest[:19]}, inputs unchanged) in {record.duration_s:.1f}s",
                unit=unit.key,
                data={"record": record},
            )
        )
        return record

    def _record(
        self,
        unit: BuildUnit,
        parent: str,
        inputs: InputSet,
        started: float,
        digest: str,
        size: int,
        labels: Mapping[str, str],
        progress: BuildProgress,
        reused_from: str = "",
    ) -> UnitRecord:
        return UnitRecord(
            profile=unit.profile.name,
            image=unit.image.name,
            kind=unit.image.kind,
            platform=unit.profile.platform,
            repository=unit.repository,
            tag=unit.tag,
            digest=digest,
            size=size,
            parent=parent,
            duration_s=round(time.monotonic() - started, 2),
            steps=len(progress.build_steps),
            cache_hits=progress.cache_hits,
            expect=expectations(self.ctx, unit, labels),
            inputs=inputs.to_record(),
            reused_from=reused_from,
        )

    def _build(
        self,
        unit: BuildUnit,
        parent: str,
        labels: dict[str, str],
        contexts: dict[str, Path],
        inputs: InputSet,
        started: float,
    ) -> UnitRecord:
        dockerfile = render_unit(self.ctx, self.renderer, unit, parent, labels)
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
            builder=self.options.builder,
            extra_tags=(f"{unit.repository}:{inputs.tag}",),  # looked up by later releases, even with --no-reuse
            provenance="mode=max" if self.options.attest else None,
            secrets=unit.image.build_secrets,
        )
        self.engine_ready()
        progress = run_buildx(
            self.ctx.runner,
            request,
            unit=unit.key,
            slot=self._builds,
            on_line=lambda progress: _reader(self.ctx, unit, progress),
            emit=self.ctx.emit,
        )
        if self.ctx.runner.dry_run:
            digest, size = "sha256:<digest>", 0
        else:
            digest = read_metadata(metadata)
            manifest = self.ctx.registry.image_manifest(unit.repository_path, digest, unit.profile.platform)
            size = manifest.compressed_size if manifest else 0
        duration = time.monotonic() - started
        record = self._record(unit, parent, inputs, started, digest, size, labels, progress)
        self.records[unit.key] = record
        if not self.ctx.runner.dry_run:
            self._attach(unit, record)
            self.ctx.emit(
                Event(
                    "unit.built",
                    f"{self._label(unit)}: {_outcome(progress)} in {duration:.1f}s, "
                    f"{progress.cache_hits}/{len(progress.build_steps)} steps cached, "
                    f"{digest[:19]}",
                    unit=unit.key,
                    data={"record": record},
                )
            )
        return record

    def _attach(self, unit: BuildUnit, record: UnitRecord) -> None:
        if self.attacher is not None:
            self.attacher.submit(Pushed(unit.key, unit.repository_path, record.ref, record.digest, record.platform))


def check_build_secrets(plan: Plan, environ: Mapping[str, str]) -> None:
    """Every secret a unit's build needs is set, before anything is built."""
    for unit in plan.units:
        for name in unit.image.build_secrets:
            if not environ.get(name):
                raise ConfigError(
                    f"{CATALOG_FILE}: images.{unit.image.name}.build_secrets: {name} is not set; the build "
                    f"mounts it as a BuildKit secret (export {name}=… before building)"
                )


def build_release(ctx: BuildContext, options: BuildOptions) -> ReleaseRecord:
    plan = plan_for(ctx.project, ctx.revision, options)
    check_build_secrets(plan, os.environ)
    ctx.emit(
        Event(
            "plan",
            f"release {plan.release_tag}: {len(plan.units)} units ({', '.join(plan.profiles)}) → "
            f"{plan.target}, {options.jobs} in parallel",
            data={
                "units": [u.key for u in plan.units],
                "parents": {u.key: u.parent_unit for u in plan.units},
                "release": plan.release_tag,
                "attest": options.attest and not ctx.runner.dry_run,  # unit.attested follows unit.built
            },
        )
    )
    engine_ready = Once(ctx.before_first_build)
    bases = LocalBases(plan.target, ctx.registry, ctx.runner, ctx.cache_dir, ctx.emit, before_build=engine_ready)
    base_refs: dict[str, str] = {}
    for unit in plan.units:
        if unit.base is not None and unit.base.ref not in base_refs:
            base_refs[unit.base.ref] = bases.ensure(unit.base.local_name) if unit.base.is_local else unit.base.ref
    record = _start_record(ctx, plan)
    attacher = _attacher(ctx, options)
    builder = UnitBuilder(ctx, plan, options, base_refs, _previous_inputs(ctx, plan), engine_ready, attacher)
    jobs = 1 if ctx.runner.dry_run else max(options.jobs, REUSE_LOOKUPS)  # dry run: commands in plan order
    outcomes = run_dag(
        [u.key for u in plan.units], {u.key: u.parent_unit for u in plan.units}, _told(ctx, builder), jobs
    )
    for outcome in outcomes.values():
        if outcome.skipped_because:
            ctx.emit(
                Event(
                    "unit.skipped",
                    f"{outcome.key}: skipped ({outcome.skipped_because} failed)",
                    unit=outcome.key,
                    data={"because": outcome.skipped_because},
                )
            )
    attested, unattested = attacher.wait() if attacher is not None else ({}, {})
    for key, outcome in outcomes.items():
        if outcome.ok and outcome.result is not None:
            outcome.result.attestations = attested.get(key, {})
            record.units[key] = outcome.result
    if not ctx.runner.dry_run and any(o.ok for o in outcomes.values()):
        path = save_record(ctx.project.root, record)
        ctx.emit(Event("record", f"release record: {path}", data={"path": str(path)}))
    failed = [o for o in outcomes.values() if o.error is not None]
    if unattested and not failed:
        raise BuildError(
            f"{len(unattested)} unit(s) pushed without their attestations ({', '.join(unattested)}); "
            f"they are in the release record, and verify fails them\n" + "\n".join(unattested.values())
        )
    if failed:
        skipped = [o.key for o in outcomes.values() if o.skipped_because]
        details = [str(o.error).splitlines()[0] for o in failed]
        first = failed[0].error
        raise BuildError(
            f"{len(failed)} unit(s) failed ({', '.join(o.key for o in failed)}); {len(skipped)} skipped because "
            f"they depend on a failed unit ({', '.join(skipped) or 'none'}); "
            f"{sum(o.ok for o in outcomes.values())} done\n"
            + "\n".join(details)
            + ("\n" + "\n".join(str(first).splitlines()[1:]) if first else "")
            + "".join("\n" + line for line in unattested.values())
        ) from None
    return record


def _attacher(ctx: BuildContext, options: BuildOptions) -> Attacher | None:
    if not options.attest or ctx.runner.dry_run:
        return None
    sbom = SbomGenerator(
        ctx.runner,
        ctx.credentials,
        insecure=ctx.registry.target.is_local,
        cache_root=ctx.cache_dir / "trivy-sbom",
        workers=options.jobs,
    )
    return Attacher(ctx.registry, sbom.generate, ctx.emit, options.jobs)


def _previous_inputs(ctx: BuildContext, plan: Plan) -> dict[str, Mapping[str, Any]]:
    """Each unit's inputs in the newest other release record that has it, to say why a unit rebuilds."""
    directory = records_dir(ctx.project.root)
    found: dict[str, Mapping[str, Any]] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if path.stem == plan.release_tag:
            continue
        try:
            other = load_record(path)
        except Exception:  # noqa: BLE001 - an unreadable old record only costs the explanation
            continue
        for key, unit in other.units.items():
            if key not in found and unit.inputs:
                found[key] = unit.inputs
    return found


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


def _told(ctx: BuildContext, builder: UnitBuilder) -> Callable[[str], UnitRecord]:
    """``builder``, telling the outside world the moment a unit fails (the BuildError comes at the end)."""

    def work(key: str) -> UnitRecord:
        try:
            return builder(key)
        except Exception as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0].removeprefix(f"{key}: ")
            label = builder._label(builder.plan.unit(key))
            ctx.emit(Event("unit.failed", f"{label}: FAILED ({first})", unit=key, data={"error": str(exc)}))
            raise

    return work


def _reader(ctx: BuildContext, unit: BuildUnit, progress: BuildProgress) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        before = (progress.current, progress.phase)
        progress.feed(line)
        ctx.emit(Event("build.output", line, unit=unit.key))
        if (progress.current, progress.phase) != before:  # the live view's "building: <step>" / "pushing"
            step = progress.current if progress.phase == "building" else progress.phase
            ctx.emit(
                Event(
                    "unit.step",
                    f"{unit.key}: {step}",
                    unit=unit.key,
                    data={"step": progress.current, "phase": progress.phase},
                )
            )

    return on_line


def _outcome(progress: BuildProgress) -> str:
    """'cached' when every layer step came from the build cache, else 'built'."""
    steps = progress.build_steps
    return "cached" if steps and progress.cache_hits == len(steps) else "built"
