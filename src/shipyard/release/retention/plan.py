"""The prune plan, decided from an :class:`~.inventory.Inventory` alone (no I/O): which releases, models
and manifests are kept, with everything a kept one needs, and which are deleted, leaves first."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ...errors import ConfigError, PruneRefused
from ..channels.ledger import Ledger
from .inventory import Inventory, Node
from .inventory import path_of as _path

DEFAULT_KEEP = 10
DEFAULT_LEDGER_ENTRIES = 10  # K: the last K entries of every channel and deployment ledger are kept
RELEASE_RE = re.compile(r"^(\d{8})-[0-9a-f]{7,40}(?:-dirty-[0-9a-f]+)?$")
SEMVER_RE = re.compile(r"^v?\d+\.\d+(?:\.\d+)?(?:-[0-9A-Za-z.-]+)?$")
DERIVED_RE = re.compile(r"^sha256-([0-9a-f]{64})(?:\.sig|\.att)?$")
SUFFIXES = ("", ".sig", ".att")  # the referrers index, the signatures, the attestations of a digest
MODELS = "models"  # <namespace>/models/<name>: where a release's ModelPack artifacts are


@dataclass(frozen=True)
class Rules:
    keep: int = DEFAULT_KEEP
    ledger_entries: int = DEFAULT_LEDGER_ENTRIES
    older_than_days: float | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def check(self) -> None:
        if self.keep < 1:
            raise ConfigError(f"--keep {self.keep}: keep at least 1 release (the newest); default {DEFAULT_KEEP}")
        if self.ledger_entries < 1:
            raise ConfigError(
                f"--ledger-entries {self.ledger_entries}: keep at least the last entry of each ledger; "
                f"default {DEFAULT_LEDGER_ENTRIES}"
            )
        if self.older_than_days is not None and self.older_than_days < 0:
            raise ConfigError(f"--older-than {self.older_than_days:g}: expected a number of days, 0 or more")


def is_model_repository(repository: str, namespace: str) -> bool:
    """``<namespace>/models/<name>``: a model's repository, not an image's."""
    return repository.startswith(f"{namespace}/{MODELS}/")


@dataclass
class Release:
    name: str
    # repository -> digest under the release tag: the images' and the models' repositories
    units: dict[str, str] = field(default_factory=dict)
    namespace: str = ""

    @property
    def date(self) -> datetime:
        match = RELEASE_RE.match(self.name)
        assert match is not None
        return datetime.strptime(match[1], "%Y%m%d").replace(tzinfo=UTC)

    @property
    def images(self) -> dict[str, str]:
        return {r: d for r, d in self.units.items() if not is_model_repository(r, self.namespace)}

    @property
    def models(self) -> dict[str, str]:
        """Model name -> the digest of its artifact under the release tag."""
        prefix = f"{self.namespace}/{MODELS}/"
        return {r.removeprefix(prefix): d for r, d in self.units.items() if is_model_repository(r, self.namespace)}


@dataclass
class Plan:
    releases: list[Release]  # oldest first
    kept: dict[str, list[str]]  # release -> why it is kept (newest first)
    removed: list[str]  # releases whose tags go (newest first)
    deletions: list[Node]  # in the order they are deleted
    untag: list[tuple[str, str]]  # (repository, release tag) of removed releases on a kept digest
    bytes_freed: int  # unique blobs (manifests included) no manifest left references
    manifests_before: int  # manifests under the namespace, every repository
    bytes_before: int  # unique blobs they reference

    @property
    def manifests_after(self) -> int:
        return self.manifests_before - len(self.deletions)


def kind_of(tag: str) -> str:
    """release, alias (semver), inputs, derived (sha256-…), or other (channels and anything unknown: kept)."""
    if RELEASE_RE.match(tag):
        return "release"
    if SEMVER_RE.match(tag):
        return "alias"
    if tag.startswith("inputs-"):
        return "inputs"
    if DERIVED_RE.match(tag):
        return "derived"
    return "other"


def releases_of(inventory: Inventory) -> list[Release]:
    """Every release tag under the namespace, grouped by name, oldest first (by the tag's date, then the
    project's record's commit time when there is one, then name)."""
    found: dict[str, Release] = {}
    for repo, tags in inventory.tags.items():
        for tag, digest in tags.items():
            node = inventory.nodes.get((repo, digest))
            if kind_of(tag) == "release" and node is not None and not node.tombstone:
                found.setdefault(tag, Release(tag, namespace=inventory.namespace)).units[repo] = digest
    created = {name: record.created for name, record in inventory.records.items()}
    return sorted(found.values(), key=lambda r: (r.date, created.get(r.name, ""), r.name))


def unit_repositories(inventory: Inventory) -> set[str]:
    return {repo for repo, tags in inventory.tags.items() if any(kind_of(t) == "release" for t in tags)}


def rollback_pair(ledger: Ledger) -> tuple[int | None, int | None]:
    """Indexes of the channel's current entry and the one ``rollback`` goes back to (as promote.py finds them)."""
    done = [i for i, e in enumerate(ledger.entries) if e.state == "complete"]
    if not done:
        return None, None
    current = ledger.entries[done[-1]]
    back = next((i for i in reversed(done[:-1]) if ledger.entries[i].release != current.release), None)
    return done[-1], back


def make_plan(inventory: Inventory, rules: Rules) -> Plan:
    rules.check()
    ns = inventory.namespace
    releases = releases_of(inventory)
    units = unit_repositories(inventory)
    reasons: dict[str, list[str]] = defaultdict(list)
    seeds: set[tuple[str, str]] = set()

    for release in releases[-rules.keep :]:
        reasons[release.name].append("newest")
    for name, ledger in sorted(inventory.channels.items()):
        window = ledger.entries[-rules.ledger_entries :]
        current, _ = rollback_pair(ledger)
        for entry in window:
            reasons[entry.release].append(f"ledger of {name}")
            seeds |= {(f"{ns}/{unit}", digest) for unit, digest in entry.digests.items()}
        if current is not None:
            reasons[ledger.entries[current].release].append(f"channel {name}")
    for name, deployments in sorted(inventory.deployments.items()):
        for deployment in deployments.entries[-rules.ledger_entries :]:
            reasons[deployment.release].append(f"deployed on {name}")
            refs = [*deployment.images.values(), *deployment.models.values()]  # what the target runs, models too
            seeds |= {(_path(ref), ref.rpartition("@")[2]) for ref in refs if "@" in ref}
    by_digest: dict[tuple[str, str], list[str]] = defaultdict(list)
    for release in releases:
        for key in release.units.items():
            by_digest[key].append(release.name)
    for repo in sorted(units):
        for tag, digest in sorted(inventory.tags[repo].items()):
            if kind_of(tag) == "other":  # a channel tag (or one prune does not know): its digest stays
                seeds.add((repo, digest))
                if tag not in inventory.channels:  # no ledger says which release: every one on that digest
                    for name in by_digest.get((repo, digest), []):
                        reasons[name].append(f"channel {tag}")
    if rules.older_than_days is not None:
        for release in releases:
            age = (rules.now - release.date).total_seconds() / 86400
            if age <= rules.older_than_days:
                reasons[release.name].append(f"younger than {rules.older_than_days:g} days")

    known = {r.name for r in releases}
    kept = {name: list(dict.fromkeys(why)) for name, why in reasons.items() if name in known}
    for release in releases:
        if release.name in kept:
            seeds |= set(release.units.items())
            record = inventory.records.get(release.name)
            for unit in record.units.values() if record else []:
                if "@" in unit.parent:  # the parent image, by digest: what reuse and a rebuild start from
                    seeds.add((_path(unit.parent), unit.parent.rpartition("@")[2]))
            for model in record.models.values() if record else []:  # by digest, whatever tag it carries
                seeds.add((_path(model.ref), model.digest))

    keep_nodes = closure(inventory, seeds)
    _refuse_lost_rollbacks(inventory, keep_nodes)
    doomed = [n for key, n in inventory.nodes.items() if key[0] in units and key not in keep_nodes]
    removed = [r.name for r in reversed(releases) if r.name not in kept]
    untag = sorted(
        (repo, r.name)
        for r in releases
        if r.name not in kept
        for repo, digest in r.units.items()
        if (repo, digest) in keep_nodes
    )
    before = _blobs(inventory.nodes.values())
    after = _blobs(n for key, n in inventory.nodes.items() if key in keep_nodes or key[0] not in units)
    return Plan(
        releases=releases,
        kept={r.name: kept[r.name] for r in reversed(releases) if r.name in kept},
        removed=removed,
        deletions=leaves_first(doomed),
        untag=untag,
        bytes_freed=sum(size for digest, size in before.items() if digest not in after),
        manifests_before=len(inventory.nodes),
        bytes_before=sum(before.values()),
    )


def closure(inventory: Inventory, seeds: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """``seeds`` and every manifest they need: index entries, and the referrers, signature and attestation
    tags of each digest (which in turn list the SBOM manifests)."""
    kept: set[tuple[str, str]] = set()
    todo = [key for key in seeds if key in inventory.nodes and not inventory.nodes[key].tombstone]
    while todo:
        key = todo.pop()
        if key in kept:
            continue
        kept.add(key)
        repo, digest = key
        node = inventory.nodes[key]
        tags = inventory.tags.get(repo, {})
        derived = [tags.get(f"sha256-{digest.partition(':')[2]}{suffix}") for suffix in SUFFIXES]
        for child in [*node.children, *(d for d in derived if d)]:
            if (repo, child) in inventory.nodes and (repo, child) not in kept:
                todo.append((repo, child))
    return kept


def leaves_first(nodes: list[Node]) -> list[Node]:
    """Every manifest after the ones it lists (among ``nodes``), so that at any point of the deletes every
    manifest left is still reachable from a tag: a re-run after a kill finds the rest."""
    by_key = {n.key: n for n in nodes}
    height: dict[tuple[str, str], int] = {}

    def of(key: tuple[str, str], seen: frozenset[tuple[str, str]] = frozenset()) -> int:
        if key not in height:
            below = [(key[0], c) for c in by_key[key].children if (key[0], c) in by_key and (key[0], c) not in seen]
            height[key] = 1 + max((of(k, seen | {key}) for k in below), default=-1)
        return height[key]

    return sorted(nodes, key=lambda n: (of(n.key), n.repository, n.digest))


def _blobs(nodes: Iterable[Node]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for node in nodes:
        sizes[node.digest] = node.size
        sizes.update(node.blobs)
    return sizes


def _refuse_lost_rollbacks(inventory: Inventory, keep_nodes: set[tuple[str, str]]) -> None:
    """A channel's current release and its rollback target must stay whole: else refuse, naming the channel."""
    for name, ledger in sorted(inventory.channels.items()):
        current, back = rollback_pair(ledger)
        for index, what in ((current, "current release"), (back, "rollback target")):
            if index is None:
                continue
            entry = ledger.entries[index]
            lost = [
                unit
                for unit, digest in entry.digests.items()
                if (f"{inventory.namespace}/{unit}", digest) in inventory.nodes
                and (f"{inventory.namespace}/{unit}", digest) not in keep_nodes
            ]
            if lost:
                depth = len(ledger.entries) - index
                raise PruneRefused(
                    f"prune refused: channel {name} would lose its {what} {entry.release} ({lost[0]}"
                    f"{f' and {len(lost) - 1} more unit(s)' if len(lost) > 1 else ''}); it is entry {index + 1} of "
                    f"{len(ledger.entries)} in its ledger: run with --ledger-entries {depth} or more"
                )
