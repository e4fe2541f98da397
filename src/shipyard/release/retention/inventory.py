"""What the registry holds under a namespace: every tag, every manifest reachable from a tag, the ledgers.

Only tags reveal manifests (distribution lists no untagged ones), so the walk starts at every tag of
every repository under the namespace and follows index entries down. What the ledgers and the project's
records name by digest is read by digest too: a model a target runs, whose only release tag an earlier
prune took away, is still seen, so its signature and attestation tags are seen to be needed. The result
is plain data that :mod:`.plan` decides on without further requests.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ...oci.client import MANIFEST_TYPES, Manifest, RegistryClient
from ...record import ReleaseRecord
from ..channels.ledger import Ledger, ledger_repository, load_ledger
from ..deploy.deployments import DeploymentLedger, deployments_repository, load_deployments

PARALLEL_REQUESTS = 8
TOMBSTONE_TYPE = "application/vnd.shipyard.pruned.v1"  # what prune puts under a tag it takes away


@dataclass(frozen=True)
class Node:
    """One manifest in one repository (distribution keeps manifests per repository)."""

    repository: str
    digest: str
    media_type: str
    size: int  # the manifest's own bytes (stored as a blob too)
    children: tuple[str, ...] = ()  # manifests an index lists
    blobs: tuple[tuple[str, int], ...] = ()  # config, layers, and index entries that are not manifests
    artifact_type: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.repository, self.digest)

    @property
    def tombstone(self) -> bool:
        return self.artifact_type == TOMBSTONE_TYPE


@dataclass
class Inventory:
    namespace: str
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # repository -> tag -> digest
    nodes: dict[tuple[str, str], Node] = field(default_factory=dict)
    channels: dict[str, Ledger] = field(default_factory=dict)
    deployments: dict[str, DeploymentLedger] = field(default_factory=dict)
    records: dict[str, ReleaseRecord] = field(default_factory=dict)  # release -> the project's record, if any


def node_of(repository: str, manifest: Manifest) -> Node:
    doc = manifest.json
    children: list[str] = []
    blobs: list[tuple[str, int]] = []
    for entry in doc.get("manifests", []) or []:
        if entry.get("mediaType") in MANIFEST_TYPES:
            children.append(str(entry["digest"]))
        else:  # a registry cache's index lists layer blobs
            blobs.append((str(entry["digest"]), int(entry.get("size", 0))))
    if isinstance(doc.get("config"), dict):
        blobs.append((str(doc["config"]["digest"]), int(doc["config"].get("size", 0))))
    blobs += [(str(layer["digest"]), int(layer.get("size", 0))) for layer in doc.get("layers", []) or []]
    return Node(
        repository,
        manifest.digest,
        manifest.media_type,
        len(manifest.raw),
        tuple(children),
        tuple(blobs),
        str(doc.get("artifactType") or (doc.get("config") or {}).get("mediaType", "")),
    )


def list_namespace(repositories: list[str], namespace: str) -> list[str]:
    prefix = namespace + "/"
    return sorted(r for r in repositories if r.startswith(prefix))


def take_inventory(
    registry: RegistryClient,
    namespace: str,
    repositories: list[str],
    records: dict[str, ReleaseRecord] | None = None,
) -> Inventory:
    """Read every tag and reachable manifest of ``repositories`` (all under ``namespace``), and the ledgers."""
    inventory = Inventory(namespace, records=dict(records or {}))
    with ThreadPoolExecutor(max_workers=PARALLEL_REQUESTS) as pool:
        tag_lists = dict(zip(repositories, pool.map(registry.tags, repositories), strict=True))
        pairs = [(repo, tag) for repo, tags in tag_lists.items() for tag in tags]
        digests = list(pool.map(lambda pair: registry.head_digest(*pair), pairs))
        for (repo, tag), digest in zip(pairs, digests, strict=True):
            if digest:  # a tag deleted since the listing is not there
                inventory.tags.setdefault(repo, {})[tag] = digest
        _walk(inventory, registry, pool, {(r, d) for r, tags in inventory.tags.items() for d in tags.values()})
        for channel in inventory.tags.get(ledger_repository(namespace), {}):
            inventory.channels[channel] = load_ledger(registry, namespace, channel)
        for target in inventory.tags.get(deployments_repository(namespace), {}):
            inventory.deployments[target] = load_deployments(registry, namespace, target)
        listed = set(repositories)
        _walk(inventory, registry, pool, {key for key in named_by_digest(inventory) if key[0] in listed})
    return inventory


def path_of(reference: str) -> str:
    """``host/ns/cpu/app@sha256:…`` -> ``ns/cpu/app``."""
    return reference.split("@", 1)[0].split("/", 1)[1] if "/" in reference else reference


def named_by_digest(inventory: Inventory) -> set[tuple[str, str]]:
    """Every (repository, digest) the ledgers and the records name: units, models and parents."""
    ns = inventory.namespace
    named = {(f"{ns}/{unit}", digest) for ledger in inventory.channels.values()
             for entry in ledger.entries for unit, digest in entry.digests.items()}  # fmt: skip
    refs = [ref for ledger in inventory.deployments.values() for e in ledger.entries
            for ref in (*e.images.values(), *e.models.values())]  # fmt: skip
    for record in inventory.records.values():
        refs += [unit.ref for unit in record.units.values()] + [unit.parent for unit in record.units.values()]
        refs += [model.ref for model in record.models.values()]
    return named | {(path_of(ref), ref.rpartition("@")[2]) for ref in refs if "@" in ref}


def _walk(
    inventory: Inventory, registry: RegistryClient, pool: ThreadPoolExecutor, wanted: set[tuple[str, str]]
) -> None:
    """Read ``wanted`` and every manifest their indexes list, but what the inventory holds already."""
    wanted = {key for key in wanted if key not in inventory.nodes}
    while wanted:
        found = list(pool.map(_fetch(registry), sorted(wanted)))
        wanted = set()
        for node in found:
            if node is None:
                continue
            inventory.nodes[node.key] = node
            wanted |= {(node.repository, c) for c in node.children if (node.repository, c) not in inventory.nodes}


def _fetch(registry: RegistryClient) -> Callable[[tuple[str, str]], Node | None]:
    def fetch(key: tuple[str, str]) -> Node | None:
        # any error is raised: a kept index not read would leave its children unprotected
        manifest = registry.manifest(*key)
        return None if manifest is None else node_of(key[0], manifest)

    return fetch
