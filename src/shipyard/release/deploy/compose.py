"""A deploy target's Docker Compose project: the channel's (or a gated release's) services by digest,
hardened as the canary runs them, secrets by reference only, models mounted read-only from their volumes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ...config.catalog import Catalog, Service
from ...config.profiles import CanarySettings, Profile
from ...config.targets import Target
from ...errors import ConfigError, PromoteRefused
from ...oci.client import RegistryClient
from ...oci.reference import RegistryNamespace
from ...oci.signing import PublicKey
from ...record import ReleaseRecord
from ..channels.ledger import load_ledger
from ..channels.promote import check_channel, gate_problems
from ..channels.trust import digest_problems
from ..engine import has_gpu
from ..model_volumes import PlacedModel, released_models, volume_name

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
    models: tuple[PlacedModel, ...] = ()  # the models it runs with, each in a volume of its digest


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
    where: RegistryNamespace,
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
        # the promotion that put this digest on the channel (the label names the release that built it)
        entry = next((e for e in reversed(promoted) if e.digests.get(f"{target.profile}/{service}") == index.digest),
                     None)  # fmt: skip
        release = entry.release if entry is not None else built_by
        models = _channel_models(registry, where, spec, channel, entry.digests if entry else {}, trusted)
        placed.append(
            Placed(
                service=service,
                ref=f"{where.host}/{repository}@{index.digest}",
                release=release,
                user=str(config.get("User") or ""),
                port=spec.port,
                probe=asdict(spec),
                requests=profile.canary.requests,
                models=models,
            )
        )
    return placed


def _channel_models(
    registry: RegistryClient,
    where: RegistryNamespace,
    spec: Service,
    channel: str,
    promoted: Mapping[str, str],
    trusted: Sequence[PublicKey] | None,
) -> tuple[PlacedModel, ...]:
    """The models of a service on ``channel``: the digests its promotion moved with it (``models/<name>``
    in the ledger entry), else the model's own channel tag; refused unless signed and verified."""
    found = []
    for name in spec.models:
        path = where.repository("models", name)
        digest = promoted.get(f"models/{name}") or registry.head_digest(path, channel)
        if digest is None:
            raise ConfigError(
                f"--channel {channel}: {where.host}/{path} has no {channel} tag; promote a release with model "
                f"{name} to {channel} first (shipyard promote --channel {channel})"
            )
        if trusted is not None:
            problems = digest_problems(registry, trusted, f"model {name}", path, digest, gates=("verify",))
            if problems:
                raise PromoteRefused(f"channel {channel} refused: {'; '.join(problems[:4])}")
        found.append(PlacedModel(name, f"{where.host}/{path}@{digest}", f"{spec.model_dir.rstrip('/')}/{name}"))
    return tuple(found)


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
                models=released_models(record, key),
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
            "volumes": _mounts(item),
            "labels": {RELEASE_LABEL: item.release, TARGET_LABEL: target.name},
        }
        if item.user:
            service["user"] = item.user
        environment = {name: f"${{{name}:?{name} must be set}}" for name in target.secrets}
        if item.models:  # where it reads them, wherever the catalog's model_dir puts them
            environment["MODEL_CACHE_DIR"] = item.models[0].mount.rsplit("/", 1)[0] or "/"
        if environment:
            service["environment"] = environment
        if has_gpu(profile.hardware):
            service["deploy"] = {
                "resources": {
                    "reservations": {"devices": [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]}
                }
            }
        services[item.service] = service
    models = {m.volume: m.ref for item in placed for m in item.models}
    volumes: dict[str, Any] = {"models": {"labels": {TARGET_LABEL: target.name}}}
    volumes |= {name: {"external": True} for name in models}  # made and filled before the project is applied
    shipyard = {"target": target.name, "profile": profile.name, "from": source}
    return {
        "name": f"shipyard-{target.name}",
        "services": services,
        "volumes": volumes,
        "x-shipyard": shipyard | ({"models": models} if models else {}),
    }


def _mounts(item: Placed) -> list[Any]:
    if not item.models:
        return [f"models:{MODEL_CACHE_DIR}"]
    return [{"type": "volume", "source": m.volume, "target": m.mount, "read_only": True} for m in item.models]


def project_models(project: Mapping[str, Any]) -> list[PlacedModel]:
    """The models a Compose project (as a deployment ledger keeps it) mounts: what a rollback to it needs."""
    found = []
    for service in (project.get("services") or {}).values():
        refs = (project.get("x-shipyard") or {}).get("models") or {}
        for mount in service.get("volumes") or []:
            if isinstance(mount, dict) and mount.get("source") in refs:
                ref = refs[mount["source"]]
                name = str(mount["target"]).rsplit("/", 1)[-1]
                if volume_name(name, ref.rpartition("@")[2]) == mount["source"]:
                    found.append(PlacedModel(name, ref, str(mount["target"])))
    return found
