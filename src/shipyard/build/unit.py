"""One build unit: reuse an image with the same inputs, or build and push it with buildx."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import BuildError, RegistryError
from ..events import Event
from ..oci.attestations import has_provenance
from ..oci.client import Manifest
from ..record import UnitRecord
from .attach import Attacher, Pushed
from .buildx import BuildProgress, BuildRequest, read_metadata
from .contexts import Wheelhouse, prepare_tools
from .inputs import InputSet, compute_inputs, why_changed
from .labels import INPUTS_LABEL, RELEASE_LABELS, unit_labels
from .once import Once
from .options import BuildContext, BuildOptions
from .plan import BuildUnit, Plan
from .prepare import expectations, render_unit, request_build_args
from .render import RenderInputs, TemplateRenderer
from .retry_build import BuildRunner
from .scheduler import Ready


@dataclass(frozen=True)
class Prepared:
    """What the pipeline settles before the first unit: the profile bases' refs (by base key), each
    unit's inputs in an earlier release (to say why it rebuilds), the models' digests (by name)."""

    base_refs: Mapping[str, str]
    previous_inputs: Mapping[str, Mapping[str, Any]]
    models: Mapping[str, str]


@dataclass(frozen=True)
class Job:
    """One unit on its way: the ref of its parent, its inputs, and when it started (monotonic)."""

    unit: BuildUnit
    parent: str
    inputs: InputSet
    started: float


@dataclass(frozen=True)
class Stored:
    """The image a unit's record points at: the index (or manifest) digest, its platform manifest's
    digest and compressed size, and the release it was reused from ("" when built now)."""

    digest: str
    size: int
    image_digest: str = ""
    reused_from: str = ""


class UnitBuilder:
    """Builds (or reuses) one unit once its parent is done. Called from the scheduler's threads."""

    def __init__(
        self,
        ctx: BuildContext,
        plan: Plan,
        options: BuildOptions,
        prepared: Prepared,
        engine_ready: Once,
        attacher: Attacher | None = None,
    ) -> None:
        self.ctx, self.plan, self.options, self.prepared = ctx, plan, options, prepared
        self.renderer = TemplateRenderer.for_project(ctx.project.templates, ctx.project.catalog.policy)
        self.wheelhouse = Wheelhouse(ctx.cache_dir, ctx.runner)
        self.records: dict[str, UnitRecord] = {}
        self._lock = threading.Lock()  # the wheelhouse and tools dirs are shared between units
        # The pool is wider than --jobs so that reuse look-ups (registry round trips) run side by side;
        # this semaphore keeps the number of buildx builds at --jobs.
        self._buildx = BuildRunner(ctx.runner, threading.Semaphore(options.jobs), ctx.emit)
        self.engine_ready = engine_ready
        self.attacher = attacher
        self.index = {u.key: i for i, u in enumerate(plan.units, 1)}

    def parent_ref(self, unit: BuildUnit) -> str:
        if unit.base is not None:
            return self.prepared.base_refs[unit.base_key]
        assert unit.parent_unit is not None
        parent = self.records.get(unit.parent_unit)
        return parent.parent_ref if parent else f"{self.plan.unit(unit.parent_unit).repository}@<digest>"

    def _label(self, unit: BuildUnit) -> str:
        return f"[{self.index[unit.key]}/{len(self.plan.units)}] {unit.key}"

    def __call__(self, key: str, ready: Ready[UnitRecord]) -> UnitRecord:
        """The unit's record; ``ready`` is told it as soon as the image is pushed (its children may start
        then, while its cache export runs)."""
        unit = self.plan.unit(key)
        started = time.monotonic()
        self.ctx.emit(Event("unit.checking", f"{self._label(unit)}: computing its input digest", unit=key))
        parent = self.parent_ref(unit)
        with self._lock:
            contexts = {"tools": prepare_tools(self.ctx.cache_dir, unit.profile.platforms, runner=self.ctx.runner)}
            if unit.image.lock is not None:
                contexts["wheels"] = self.wheelhouse.prepare_all(
                    unit.image.lock, unit.profile.python_version, unit.profile.platforms
                )
        labels = unit_labels(self.ctx, unit)
        identity = {**labels, **{name: "<release>" for name in RELEASE_LABELS}}
        identity_text = self.renderer.render(RenderInputs(unit.profile, unit.image, parent, identity))
        inputs = compute_inputs(
            dockerfile=identity_text,
            build_args=unit.build_args,
            platform=unit.platform,
            parent=parent,
            context=unit.image.context,
            named_contexts=contexts,
        )
        labels[INPUTS_LABEL] = inputs.digest
        job = Job(unit, parent, inputs, started)
        refused = "" if self.options.reuse else "--no-reuse"
        if self.options.reuse and not self.ctx.runner.dry_run:
            reused = self._reuse(job)
            if isinstance(reused, UnitRecord):
                return reused
            refused = reused or ""
        reasons = [refused] if refused else why_changed(self.prepared.previous_inputs.get(key), inputs)
        self.ctx.emit(
            Event(
                "unit.started",
                f"{self._label(unit)}: building ({'; '.join(reasons)})",
                unit=key,
                data={"reasons": reasons},
            )
        )
        return self._build(job, labels, contexts, ready)

    def _reuse(self, job: Job) -> UnitRecord | str | None:
        """The reused unit's record; else why not (None: no image with these inputs)."""
        registry, unit, inputs = self.ctx.registry, job.unit, job.inputs
        found = registry.manifest(unit.repository_path, inputs.tag)
        if found is None:
            return None
        image = registry.for_platform(unit.repository_path, found, unit.profile.platform)
        if self.options.attest and not has_provenance(found, image.digest):
            return "the image with these inputs has no provenance attestation"  # pushed before they were on
        self.ctx.emit(Event("unit.reusing", f"{self._label(unit)}: reusing {inputs.tag}", unit=unit.key))
        for tag in (unit.tag, *self.ctx.revision.aliases):  # server-side re-tag: the release's, then its semver
            registry.put_manifest(unit.repository_path, tag, found.raw, found.media_type)
        config = registry.config_of(unit.repository_path, image)
        labels = dict((config.get("config") or {}).get("Labels") or {})
        image_labels = {k: labels.get(k, v) for k, v in unit_labels(self.ctx, unit).items()}
        reused_from = labels.get("org.opencontainers.image.version", "?")
        stored = Stored(found.digest, image.compressed_size, image.digest, reused_from)
        record = self._record(job, stored, image_labels | {INPUTS_LABEL: inputs.digest}, BuildProgress())
        self.records[unit.key] = record
        self._attach(unit, record, reused=True)
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

    def _record(self, job: Job, stored: Stored, labels: Mapping[str, str], progress: BuildProgress) -> UnitRecord:
        unit = job.unit
        return UnitRecord(
            profile=unit.profile.name,
            image=unit.image.name,
            kind=unit.image.kind,
            platform=unit.profile.platform,
            platforms=list(unit.profile.platforms) if unit.profile.multi_platform else [],
            repository=unit.repository,
            tag=unit.tag,
            digest=stored.digest,
            size=stored.size,
            parent=job.parent,
            duration_s=round(time.monotonic() - job.started, 2),
            steps=len(progress.build_steps),
            cache_hits=progress.cache_hits,
            expect=expectations(self.ctx, unit, labels),
            inputs=job.inputs.to_record(),
            reused_from=stored.reused_from,
            image_digest=stored.image_digest,
            models=self._models_of(unit),
        )

    def _build(
        self, job: Job, labels: dict[str, str], contexts: dict[str, Path], ready: Ready[UnitRecord]
    ) -> UnitRecord:
        unit, parent = job.unit, job.parent
        dockerfile = render_unit(self.ctx, self.renderer, unit, parent, labels)
        metadata = dockerfile.with_name("metadata.json")
        metadata.unlink(missing_ok=True)
        request = BuildRequest(
            context=unit.image.context,
            dockerfile=dockerfile,
            tag=unit.ref,
            platform=unit.platform,
            cache_ref=unit.cache_ref,
            metadata_file=metadata,
            build_args=request_build_args(unit, parent, self.ctx.revision),
            build_contexts=contexts,
            builder=self.options.builder,
            provenance="mode=max" if self.options.attest else None,
            secrets=unit.image.build_secrets,
        )
        self.engine_ready()
        early: list[UnitRecord] = []
        problems: list[Exception] = []

        def pushed(progress: BuildProgress) -> None:
            """The image is in the registry: its record now, its children and its attestations start."""
            try:
                early.append(self._pushed(job, progress.exported_digest, labels, progress))
            except Exception as exc:  # noqa: BLE001 - raised below, once buildx has ended
                problems.append(exc)
                return
            ready(early[0])
            self._attach(unit, early[0])

        progress = self._buildx.run(
            request,
            unit=unit.key,
            on_line=lambda progress: _reader(self.ctx, unit, progress),
            on_pushed=None if self.ctx.runner.dry_run else pushed,
        )
        if problems:
            raise problems[0]
        if self.ctx.runner.dry_run:
            record = self._record(job, Stored("sha256:<digest>", 0), labels, progress)
        elif early:
            record = self._finished(unit, early[0], metadata, progress)
        else:  # no export vertex seen (another buildx's output): what --metadata-file says, as before
            record = self._pushed(job, read_metadata(metadata), labels, progress)
            self._attach(unit, record)
        duration = time.monotonic() - job.started
        record = replace(record, duration_s=round(duration, 2))
        self.records[unit.key] = record
        if not self.ctx.runner.dry_run:
            self.ctx.emit(
                Event(
                    "unit.built",
                    f"{self._label(unit)}: {_outcome(progress)} in {duration:.1f}s, "
                    f"{progress.cache_hits}/{len(progress.build_steps)} steps cached, "
                    f"{record.digest[:19]}",
                    unit=unit.key,
                    data={"record": record},
                )
            )
        return record

    def _pushed(self, job: Job, digest: str, labels: dict[str, str], progress: BuildProgress) -> UnitRecord:
        """The record of a unit buildx pushed as ``digest``, its inputs and semver tags put on it."""
        manifest = self._tag_pushed(job.unit, digest, job.inputs)
        record = self._record(job, Stored(digest, manifest.compressed_size, manifest.digest), labels, progress)
        self.records[job.unit.key] = record
        return record

    def _finished(self, unit: BuildUnit, record: UnitRecord, metadata: Path, progress: BuildProgress) -> UnitRecord:
        """The record once buildx ended: its digest what --metadata-file says (when buildx got to write it).
        A failure after the push (the cache export, or the engine's second push of the same image) is told,
        not fatal: the image is in the registry; at worst the next build of this unit finds less in the cache."""
        if progress.failed_after_push:
            last = (progress.failed_after_push.splitlines() or [""])[-1][:200]
            self.ctx.emit(
                Event(
                    "unit.warning",
                    f"{unit.key}: pushed {record.digest[:19]}, then buildx failed after the push ({last}); "
                    "the image stands, the next build of it may find less in the cache",
                    unit=unit.key,
                )
            )
            return record
        digest = read_metadata(metadata)
        if digest != record.digest:
            raise BuildError(f"{unit.key}: buildx pushed {record.digest}, but its metadata file says {digest}")
        return record

    def _models_of(self, unit: BuildUnit) -> dict[str, str]:
        """The digests of the models a service unit is released with (none in a dry run: nothing pushed)."""
        needs = unit.image.service.models if unit.image.service else ()
        models = self.prepared.models
        return {name: models[name] for name in needs if name in models}

    def _tag_pushed(self, unit: BuildUnit, digest: str, inputs: InputSet) -> Manifest:
        """Put the inputs tag (later releases look it up, even after --no-reuse) and the semver tags on
        the index buildx pushed, by manifest PUTs: a second ``--tag`` would be a second push of the
        image by the engine. Returns the platform manifest."""
        registry, path = self.ctx.registry, unit.repository_path
        index = registry.manifest(path, digest)
        if index is None:
            raise RegistryError(f"{unit.key}: buildx pushed {unit.repository}@{digest}, but the registry lacks it")
        for tag in (inputs.tag, *self.ctx.revision.aliases):
            registry.put_manifest(path, tag, index.raw, index.media_type)
        return registry.for_platform(path, index, unit.profile.platform)

    def _attach(self, unit: BuildUnit, record: UnitRecord, *, reused: bool = False) -> None:
        if self.attacher is not None:
            self.attacher.submit(
                Pushed(unit.key, unit.repository_path, record.ref, record.digest, record.platform, reused)
            )


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
