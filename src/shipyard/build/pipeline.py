"""plan → render → (reuse | build and push) → release record, the DAG scheduled on a bounded pool."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ..config.catalog import CATALOG_FILE
from ..errors import BuildError, ConfigError
from ..events import Event
from ..record import ReleaseRecord, UnitRecord, load_record, records_dir, save_record
from ..runner import stopping
from .attach import Attacher
from .base import LocalBases
from .models import release_models
from .once import Once
from .options import REUSE_LOOKUPS, BuildContext, BuildOptions
from .plan import Plan
from .prepare import plan_for
from .sbom import SbomGenerator
from .scheduler import Ready, run_dag
from .unit import Prepared, UnitBuilder


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
    aliases = ctx.revision.aliases
    also = f" (also {', '.join(aliases)})" if aliases else ""
    ctx.emit(
        Event(
            "plan",
            f"release {plan.release_tag}{also}: "
            f"{len(plan.units)} units ({', '.join(plan.profiles)}) → {plan.target}, {options.jobs} in parallel",
            data={
                "units": [u.key for u in plan.units],
                "parents": {u.key: u.parent_unit for u in plan.units},
                "release": plan.release_tag,
                "aliases": list(aliases),
                # unit.attested follows unit.built
                "attest": (options.attest or ctx.signer is not None) and not ctx.runner.dry_run,
            },
        )
    )
    if unapplied := ctx.revision.unapplied:
        ctx.emit(
            Event(
                "aliases.skipped",
                f"tag{'s' if len(unapplied) > 1 else ''} {', '.join(unapplied)} on HEAD not applied: the tree is "
                f"dirty (commit, then build again)",
                data={"tags": list(unapplied)},
            )
        )
    engine_ready = Once(ctx.before_first_build)
    # before any image: a refused model pushes nothing, nor one the engine's preflight would stop
    models = release_models(ctx, plan, before_upload=engine_ready)
    bases = LocalBases(plan.target, ctx.registry, ctx.runner, ctx.cache_dir, ctx.emit, before_build=engine_ready)
    base_refs: dict[str, str] = {}
    for unit in plan.units:
        if unit.base is not None and unit.base_key not in base_refs:
            base_refs[unit.base_key] = (
                bases.ensure(unit.base.local_name, platforms=unit.profile.platforms)
                if unit.base.is_local
                else unit.base.ref
            )
    record = _start_record(ctx, plan)
    record.models.update(models)
    attacher = _attacher(ctx, options)
    digests = {name: model.digest for name, model in record.models.items()}
    prepared = Prepared(base_refs, _previous_inputs(ctx, plan), digests)
    builder = UnitBuilder(ctx, plan, options, prepared, engine_ready, attacher)
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
    """Attestations and the signature of every pushed unit; with ``--no-attest`` the signature only."""
    if ctx.runner.dry_run or not (options.attest or ctx.signer):
        return None
    sbom = SbomGenerator(
        ctx.runner,
        ctx.credentials,
        insecure=ctx.registry.target.is_local,
        cache_root=ctx.cache_dir / "trivy-sbom",
        workers=options.jobs,
    )
    generate = sbom.generate if options.attest else None
    return Attacher(ctx.registry, generate, ctx.emit, options.jobs, signer=ctx.signer, lookups=REUSE_LOOKUPS)


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
        release=plan.release_tag,
        revision=ctx.revision.sha,
        created=ctx.revision.created,
        registry=str(plan.target),
        aliases=list(ctx.revision.aliases),
    )
    path = records_dir(ctx.project.root) / f"{plan.release_tag}.json"
    if not path.is_file():
        return fresh
    existing = load_record(path)
    if (existing.revision, existing.registry) != (fresh.revision, fresh.registry):
        return fresh
    existing.aliases = fresh.aliases  # the git tags on HEAD now; verify tells a unit an earlier run left without
    return existing


def _told(ctx: BuildContext, builder: UnitBuilder) -> Callable[[str, Ready[UnitRecord]], UnitRecord]:
    """``builder``, telling the outside world the moment a unit fails (the BuildError comes at the end)."""

    def work(key: str, ready: Ready[UnitRecord]) -> UnitRecord:
        try:
            return builder(key, ready)
        except Exception as exc:
            if stopping():  # interrupted: the unit did not fail, shipyard is on its way out
                raise
            first = (str(exc).splitlines() or [type(exc).__name__])[0].removeprefix(f"{key}: ")
            label = builder._label(builder.plan.unit(key))
            ctx.emit(Event("unit.failed", f"{label}: FAILED ({first})", unit=key, data={"error": str(exc)}))
            raise

    return work
