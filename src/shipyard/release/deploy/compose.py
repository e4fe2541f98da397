"""A deploy target's Docker Compose project: the channel's (or a release's) services, by digest, hardened.

What a target runs is decided from the registry: for ``--channel C`` each service's ``C`` tag, so the
project holds what was promoted; for a release, its record's digests, gated as a promotion is. Each
service runs as the canary runs it (the image's non-root user, a read-only root with a tmpfs
``/tmp``, no capabilities, no new privileges) with the profile's ``runtime`` limits, restarts
unless stopped, keeps its models in a named volume, and takes its secrets from the deploying
environment as ``${NAME:?…}``: Compose fails loudly when one is missing, and no value is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ...config.catalog import Catalog
from ...config.profiles import CanarySettings, Profile
from ...config.targets import Target
from ...errors import ConfigError, PromoteRefused
from ...oci.client import RegistryClient
from ...oci.reference import RegistryTarget
from ...oci.signing import PublicKey
from ...record import ReleaseRecord
from ..channels.ledger import load_ledger
from ..channels.promote import check_channel, gate_problems
from ..channels.trust import digest_problems
from ..engine import has_gpu

MODEL_CACHE_DIR = "/models"  # the templates' model_cache_dir
RELEASE_LABEL = "io.shipyard.release"
TARGET_LABEL = "io.shipyard.target"


@dataclass(frozen=True)
class Placed:
    """One service of a target, at the digest it is to run."""

    service: str
    ref: str  # host/repository@sha256:…
    release: str  # the release that built it (its version label)
    user: str  # the image's own user, uid:gid
    port: int
    probe: Mapping[str, Any]  # health path, golden request, SLO, ready timeout: the service table of the catalog
    requests: int  # golden requests the live check sends (the profile's canary.requests)


def target_named(catalog: Catalog, name: str) -> Target:
    try:
        return catalog.targets[name]
    except KeyError:
        known = ", ".join(catalog.targets) or "none (add a [targets.<name>] table to shipyard.toml)"
        raise ConfigError(f"--target: unknown target {name!r}; shipyard.toml has: {known}") from None


def target_services(catalog: Catalog, target: Target) -> list[str]:
    return list(target.services) or catalog.services_of(target.profile)


def from_channel(
    registry: RegistryClient,
    where: RegistryTarget,
    catalog: Catalog,
    target: Target,
    profile: Profile,
    channel: str,
    *,
    trusted: Sequence[PublicKey] | None = None,
) -> list[Placed]:
    """Each service at its channel tag, as the registry has it now (what was promoted, not a file); with
    ``trusted``, refused unless each digest is signed by one of those keys and carries signed verify and
    scan verdicts."""
    check_channel(channel)
    promoted = load_ledger(registry, where.namespace, channel).completed
    placed = []
    for service in target_services(catalog, target):
        repository = where.repository(target.profile, service)
        index = registry.manifest(repository, channel)
        if index is None:
            raise ConfigError(
                f"--channel {channel}: {where.host}/{repository} has no {channel} tag; promote a release "
                f"of profile {target.profile} to {channel} first (shipyard promote --channel {channel})"
            )
        spec = catalog.images[service].service  # the port comes from the catalog, the user from the image
        assert spec is not None
        if trusted is not None:
            problems = digest_problems(registry, trusted, f"{target.profile}/{service}", repository, index.digest)
            if problems:
                raise PromoteRefused(f"target {target.name}: channel {channel} refused: {'; '.join(problems[:4])}")
        manifest = registry.for_platform(repository, index, profile.platform)  # the image the host runs
        config = registry.config_of(repository, manifest).get("config") or {}
        labels = config.get("Labels") or {}
        built_by = str(labels.get("org.opencontainers.image.version", "?"))
        # the release promoted to the channel at this digest (the label names the one that built it)
        release = next(
            (e.release for e in reversed(promoted) if e.digests.get(f"{target.profile}/{service}") == index.digest),
            built_by,
        )
        placed.append(
            Placed(
                service=service,
                ref=f"{where.host}/{repository}@{index.digest}",
                release=release,
                user=str(config.get("User") or ""),
                port=spec.port,
                probe=asdict(spec),
                requests=profile.canary.requests,
            )
        )
    return placed


Policy = Callable[[ReleaseRecord, list[str]], list[str]]  # what stands between these units and a machine


def from_release(
    record: ReleaseRecord, catalog: Catalog, target: Target, *, force: bool = False, policy: Policy = gate_problems
) -> list[Placed]:
    """Each service at its digest in the release record, refused when ``policy`` finds a problem (by default
    the record's own verdicts; deploy passes the registry's signed ones)."""
    keys = [f"{target.profile}/{service}" for service in target_services(catalog, target)]
    missing = [key for key in keys if key not in record.units]
    if missing:
        raise ConfigError(f"release {record.release} has no {', '.join(missing)}; build that profile first")
    problems = policy(record, keys)
    if problems and not force:
        raise PromoteRefused(f"target {target.name}: {record.release} refused: {'; '.join(problems[:4])}")
    placed = []
    for key in keys:
        unit = record.units[key]
        placed.append(
            Placed(
                service=unit.image,
                ref=unit.ref,
                release=record.release,
                user=str(unit.expect.get("user", "")),
                port=int((unit.expect.get("service") or {})["port"]),
                probe=unit.expect["service"],
                requests=int((unit.expect.get("canary") or {}).get("requests", CanarySettings.requests)),
            )
        )
    return placed


def compose_project(target: Target, profile: Profile, placed: Iterable[Placed], source: str) -> dict[str, Any]:
    """The Compose project (a plain mapping, written as YAML) for ``target``; ``source`` says what it
    deploys (``channel stable`` or a release tag), for the people reading it."""
    limits = profile.runtime
    services: dict[str, Any] = {}
    for item in placed:
        service: dict[str, Any] = {
            "image": item.ref,
            "restart": "unless-stopped",
            "read_only": True,
            "tmpfs": ["/tmp:rw,noexec,nosuid,size=64m"],
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "mem_limit": limits.memory,
            "cpus": limits.cpus,
            "pids_limit": limits.pids,
            "ports": [f"{target.ports.get(item.service, item.port)}:{item.port}"],
            "volumes": [f"models:{MODEL_CACHE_DIR}"],
            "labels": {RELEASE_LABEL: item.release, TARGET_LABEL: target.name},
        }
        if item.user:
            service["user"] = item.user
        if target.secrets:
            service["environment"] = {name: f"${{{name}:?{name} must be set}}" for name in target.secrets}
        if has_gpu(profile.hardware):
            service["deploy"] = {
                "resources": {
                    "reservations": {"devices": [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}
                }
            }
        services[item.service] = service
    return {
        "name": f"shipyard-{target.name}",
        "services": services,
        "volumes": {"models": {"labels": {TARGET_LABEL: target.name}}},
        "x-shipyard": {"target": target.name, "profile": profile.name, "from": source},
    }
