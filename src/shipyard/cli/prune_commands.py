"""``shipyard prune``, its options, help and handler: the plan (kept releases and why, their images and
models, removed ones, manifests, bytes), then the deletes."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..config.registry import parse_registry
from ..errors import ConfigError, RegistryError
from ..oci.credentials import credentials_for
from ..oci.ghcr import GhcrPackages
from ..oci.reference import RegistryNamespace
from ..record import ReleaseRecord, load_record, records_dir
from ..release.retention.apply import apply_plan, backend_for
from ..release.retention.inventory import take_inventory
from ..release.retention.plan import Plan, Rules
from ..release.retention.plan import make_plan as plan_prune
from .console import Console, table
from .options import DRY_RUN, REGISTRY, Arguments, Option
from .shared import reachable_registry
from .verb import Verb


def _records(project: Path) -> dict[str, ReleaseRecord]:
    """The project's release records, when prune runs in one: their commit times and parents by digest."""
    directory = records_dir(project.resolve())
    found = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            record = load_record(path)
        except ConfigError:
            continue
        found[record.release] = record
    return found


def _packages(target: RegistryNamespace, owner: str) -> GhcrPackages:
    """GHCR's package API, with the token the registry client uses (never printed)."""
    creds = credentials_for(target)
    if creds is None:
        raise ConfigError("ghcr.io: deleting package versions needs a token (GITHUB_TOKEN with delete:packages)")
    return GhcrPackages(owner, creds.password)


@dataclass(frozen=True, kw_only=True)
class PruneArgs(Arguments):
    keep: int
    older_than: float | None
    ledger_entries: int
    dry_run: bool
    registry: str | None


def cmd_prune(args: PruneArgs, console: Console) -> int:
    rules = Rules(keep=args.keep, ledger_entries=args.ledger_entries, older_than_days=args.older_than)
    rules.check()  # a bad flag is refused before the registry is asked anything
    target = parse_registry(args.registry)
    registry = reachable_registry(target, console)
    try:
        backend = backend_for(registry, lambda owner: _packages(target, owner))
        repositories = backend.repositories(target.namespace)
        inventory = take_inventory(registry, target.namespace, repositories, _records(args.project))
        plan = plan_prune(inventory, rules)
        if not plan.releases:
            raise RegistryError(
                f"{target}: no shipyard releases there (no <namespace>/<profile>/<image>:YYYYMMDD-<sha> tags in "
                f"{len(repositories)} repositories); expected the registry and namespace releases were pushed to"
            )
        _show(console, plan, dry_run=args.dry_run)
        deleted = 0 if args.dry_run else apply_plan(plan, registry, backend, console.event)
        if args.json:
            console.data(json.dumps(_json(plan, dry_run=args.dry_run, deleted=deleted), indent=2))
        elif args.dry_run:
            console.line("dry run: nothing deleted")
        else:
            console.line(f"deleted {deleted} manifest(s); {backend.reclaim_hint()}")
    finally:
        registry.close()
    return 0


def _show(console: Console, plan: Plan, *, dry_run: bool) -> None:
    rows: list[tuple[str, ...]] = [("release", "units", "models", "plan", "why")]
    units = {r.name: str(len(r.images)) for r in plan.releases}
    models = {r.name: ", ".join(sorted(r.models)) or "-" for r in plan.releases}
    for name, why in plan.kept.items():
        rows.append((name, units[name], models[name], "keep", ", ".join(why)))
    untagged = Counter(tag for _, tag in plan.untag)
    for name in plan.removed:
        stays = untagged.get(name, 0)
        note = f"tag only on {stays} unit(s) or model(s): a kept release uses the same digest" if stays else ""
        rows.append((name, units[name], models[name], "remove", note))
    table(console, rows)
    verb = "would delete" if dry_run else "deletes"
    console.line(
        f"{len(plan.kept)} release(s) kept, {len(plan.removed)} removed: {verb} {len(plan.deletions)} of "
        f"{plan.manifests_before} manifests ({plan.manifests_after} left) and {len(plan.untag)} tag(s) on kept "
        f"digests; frees {_size(plan.bytes_freed)} of {_size(plan.bytes_before)} ({plan.bytes_freed} bytes)"
    )


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def _json(plan: Plan, *, dry_run: bool, deleted: int) -> dict[str, object]:
    return {
        "dry_run": dry_run,
        "kept": plan.kept,
        "removed": plan.removed,
        "models": {r.name: r.models for r in reversed(plan.releases)},  # release -> model name -> digest
        "deletions": [{"repository": n.repository, "digest": n.digest} for n in plan.deletions],
        "untagged": [{"repository": repo, "tag": tag} for repo, tag in plan.untag],
        "deleted": deleted,
        "manifests_before": plan.manifests_before,
        "manifests_after": plan.manifests_after,
        "bytes_before": plan.bytes_before,
        "bytes_freed": plan.bytes_freed,
    }


VERBS = (
    Verb(
        "prune",
        help="delete old releases from the registry by digest, keeping what channels, ledgers and rollbacks need",
        example="shipyard prune --keep 5 --dry-run",
        args=PruneArgs,
        run=cmd_prune,
        options=(
            Option(
                ("--keep",),
                type=int,
                default=10,
                metavar="N",
                help="keep the newest N releases (default 10; at least 1)",
            ),
            Option(
                ("--older-than",),
                type=float,
                metavar="DAYS",
                help="remove only releases older than DAYS (by their tag's date); never what the other rules keep",
            ),
            Option(
                ("--ledger-entries",),
                type=int,
                default=10,
                metavar="K",
                help="keep every release named in the last K entries of each channel and deployment ledger "
                "(default 10)",
            ),
            DRY_RUN,
            REGISTRY,
        ),
    ),
)
