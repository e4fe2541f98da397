"""The models a release's services need, as ModelPack artifacts under the release tag, all checked before
the first is pushed: a ``path`` model pushed (or only tagged, when the registry has its files' digest), a
``from`` model read back by digest and recorded."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ..config.catalog import CATALOG_FILE, Catalog
from ..config.models import ModelSpec
from ..errors import ConfigError
from ..events import Event
from ..oci.artifacts import MANIFEST_TYPE
from ..oci.client import RegistryClient
from ..oci.cosign import push_signature
from ..oci.credentials import reading_credentials_for
from ..oci.model_signature import HashingRules, NotSignable, hashing_rules, push_model_signature
from ..oci.modelfiles import model_paths
from ..oci.modelpack import CONFIG_TYPE, LocalModel, ModelPack, inspect_model, push_model
from ..oci.reference import RegistryNamespace
from ..record import ModelFileRecord, ModelRecord, reports_dir, write_atomic
from .options import BuildContext
from .plan import Plan

MB = 1_000_000  # as verify's size check counts an image's budget


@dataclass(frozen=True)
class PlannedModel:
    """A model the plan's services need, and where the release puts it."""

    spec: ModelSpec
    repository: str  # host/namespace/models/name
    repository_path: str  # namespace/models/name, inside the registry
    tag: str

    @property
    def name(self) -> str:
        return self.spec.name


def plan_models(catalog: Catalog, plan: Plan) -> list[PlannedModel]:
    """The models of the services the plan builds (none for a model no built service lists), in catalog order."""
    return [
        PlannedModel(
            catalog.models[name],
            plan.target.ref("models", name),
            plan.target.repository("models", name),
            plan.release_tag,
        )
        for name in catalog.models_for(unit.image.name for unit in plan.units)
    ]


def release_models(
    ctx: BuildContext, plan: Plan, before_upload: Callable[[], None] = lambda: None
) -> dict[str, ModelRecord]:
    """Check every model the plan needs, then push (or tag) each: the records, by model name.

    ``before_upload`` runs before the first model the registry lacks is sent (the engine's preflight: a
    build that cannot build sends nothing); a model already there is only tagged. A dry run pushes and
    reads nothing: it says what the build would do."""
    planned = plan_models(ctx.project.catalog, plan)
    if not planned:
        return {}
    for model in planned:
        if model.spec.path is not None:
            sizes = _sizes(model)
            _check_budget(model, sum(sizes), len(sizes))
    if ctx.runner.dry_run:
        for model in planned:
            _tell_dry_run(ctx, model)
        return {}
    with _readers(ctx) as reader:
        found = {m.name: _read_from(ctx, reader, m) for m in planned if m.spec.artifact is not None}
        records = {}
        for model in planned:
            pack = found.get(model.name)
            if pack is None:
                records[model.name] = _push_directory(ctx, model, before_upload)
            else:
                records[model.name] = _record_artifact(ctx, model, pack)
            _sign(ctx, model.name, records[model.name])
    return records


def _sign(ctx: BuildContext, name: str, record: ModelRecord) -> None:
    """Sign the model's manifest digest as an image's is (cosign's layout: ``cosign verify`` reads it), in the
    build's registry; a model only recorded from another registry is left to its own signatures."""
    host, _, path = record.repository.partition("/")
    if ctx.signer is None or host != ctx.registry.target.host:
        return
    added = push_signature(ctx.registry, path, record.digest, record.repository, ctx.signer)
    state = "signed" if added else "signature present"
    key = ctx.signer.public.key_id[:19]
    ctx.emit(Event("model.signed", f"model {name}: {state} ({key}…) {record.repository}@{record.digest[:19]}"))
    # and in sigstore model-signing's format, over the files (``model_signing verify key`` reads it): the
    # directory's hidden entries, which the model leaves out, are named for the verifier to leave out too
    rules = hashing_rules(ctx.project.root / record.origin) if record.source == "path" else HashingRules()
    try:
        bundle, added = push_model_signature(ctx.registry, path, record.digest, ctx.signer, name=name, rules=rules)
    except NotSignable as exc:
        ctx.emit(Event("model.unsigned", f"model {name}: no model-signing bundle ({exc})", data={"model": name}))
        return
    write_atomic(
        reports_dir(ctx.project.root, ctx.revision.release_tag) / "model-signing" / f"{name}.sig", bundle.decode()
    )
    state = "model-signing bundle pushed" if added else "model-signing bundle present"
    ctx.emit(Event("model.signed", f"model {name}: {state} (referrer of {record.digest[:19]})", data={"model": name}))


def _sizes(model: PlannedModel) -> list[int]:
    assert model.spec.path is not None
    return [(model.spec.path / path).stat().st_size for path in model_paths(model.spec.path)]


def _check_budget(model: PlannedModel, size: int, files: int) -> None:
    budget = model.spec.size_budget_mb
    if budget is not None and size > budget * MB:
        raise ConfigError(
            f"{CATALOG_FILE}: models.{model.name}.size_budget_mb: model {model.name} is {size / MB:.1f} MB "
            f"({files} files), over its budget of {budget} MB; nothing was pushed",
            file=CATALOG_FILE,
        )


def _tell_dry_run(ctx: BuildContext, model: PlannedModel) -> None:
    if model.spec.artifact is not None:
        what = f"would read back {model.spec.artifact} and record it as {model.repository}:{model.tag}"
    else:
        sizes = _sizes(model)
        what = f"would push {len(sizes)} files ({sum(sizes) / MB:.1f} MB) as {model.repository}:{model.tag}"
    ctx.emit(Event("model.planned", f"model {model.name}: {what}", data={"model": model.name}))


def _push_directory(ctx: BuildContext, model: PlannedModel, before_upload: Callable[[], None]) -> ModelRecord:
    """Tag the artifact these files make when the registry has it, else push what it lacks."""
    spec, registry = model.spec, ctx.registry
    assert spec.path is not None
    local = LocalModel.scan(spec.path, name=spec.name, format=spec.format)
    files, raw = local.files, local.manifest()
    existing = registry.manifest(model.repository_path, _digest(raw))
    if existing is not None:
        digest, uploaded = registry.put_manifest(model.repository_path, model.tag, raw, MANIFEST_TYPE), 0
    else:
        before_upload()
        pushed = push_model(registry, model.repository_path, local, tag=model.tag, emit=ctx.emit)
        digest, uploaded = pushed.digest, pushed.uploaded_bytes
    for alias in ctx.revision.aliases:
        registry.put_manifest(model.repository_path, alias, raw, MANIFEST_TYPE)
    record = ModelRecord(
        repository=model.repository,
        tag=model.tag,
        digest=digest,
        format=spec.format,
        files=[ModelFileRecord(f.path, f.digest, f.size) for f in files],
        size=sum(f.size for f in files),
        source="path",
        origin=spec.path.relative_to(ctx.project.root).as_posix(),
        budget_mb=spec.size_budget_mb,
    )
    outcome = "reused (same files)" if existing is not None else "pushed"
    ctx.emit(
        Event(
            "model.built",
            f"model {model.name}: {outcome} {model.repository}:{model.tag} {digest[:19]} "
            f"({len(files)} files, {record.size / MB:.1f} MB; {uploaded} bytes uploaded)",
            data={"model": model.name, "digest": digest, "uploaded_bytes": uploaded, "reused": existing is not None},
        )
    )
    return record


def _read_from(ctx: BuildContext, reader: Callable[[str], RegistryClient], model: PlannedModel) -> ModelPack:
    """The ``from`` artifact, read back by its digest and held to the catalog (format, budget)."""
    artifact = model.spec.artifact
    assert artifact is not None
    pack = inspect_model(reader(artifact.host), artifact.repository, artifact.digest)
    if pack.format and pack.format != model.spec.format:
        raise ConfigError(
            f"{CATALOG_FILE}: models.{model.name}.format: {model.spec.format!r}, but {artifact} says its format "
            f"is {pack.format!r}",
            file=CATALOG_FILE,
        )
    _check_budget(model, pack.size, len(pack.files))
    return pack


def _record_artifact(ctx: BuildContext, model: PlannedModel, pack: ModelPack) -> ModelRecord:
    """The record of a ``from`` model; in the build's own registry, also tagged beside the pushed ones."""
    artifact = model.spec.artifact
    assert artifact is not None
    repository, tag, how = f"{artifact.host}/{artifact.repository}", "", "recorded (another registry: not tagged)"
    if artifact.host == ctx.registry.target.host:
        if _mount_all(ctx.registry, model, artifact.repository, pack):
            manifest = ctx.registry.manifest(artifact.repository, artifact.digest)
            assert manifest is not None  # inspect_model read it
            for name in (model.tag, *ctx.revision.aliases):
                ctx.registry.put_manifest(model.repository_path, name, manifest.raw, manifest.media_type)
            repository, tag, how = model.repository, model.tag, f"tagged {model.repository}:{model.tag}"
        else:
            how = "recorded (the registry mounts no blobs across repositories: not tagged)"
    ctx.emit(
        Event(
            "model.built",
            f"model {model.name}: {artifact.digest[:19]} from {artifact.host}/{artifact.repository} {how} "
            f"({len(pack.files)} files, {pack.size / MB:.1f} MB; 0 bytes uploaded)",
            data={"model": model.name, "digest": artifact.digest, "uploaded_bytes": 0, "reused": True},
        )
    )
    return ModelRecord(
        repository=repository,
        tag=tag,
        digest=artifact.digest,
        format=pack.format or model.spec.format,
        files=[ModelFileRecord(f.path, f.digest, f.size) for f in pack.files],
        size=pack.size,
        source="from",
        origin=str(artifact),
        budget_mb=model.spec.size_budget_mb,
    )


def _mount_all(registry: RegistryClient, model: PlannedModel, source: str, pack: ModelPack) -> bool:
    """Every blob of the artifact (config and layers) linked into the model's repository."""
    if source == model.repository_path:
        return True
    manifest = registry.manifest(source, pack.digest)
    assert manifest is not None
    config = manifest.json.get("config") or {}
    digests = [str(config.get("digest"))] if config.get("mediaType") == CONFIG_TYPE else []
    return all(registry.mount_blob(model.repository_path, d, source) for d in [*digests, *_layers(pack)])


def _layers(pack: ModelPack) -> Sequence[str]:
    return list(dict.fromkeys(file.digest for file in pack.files))


@contextlib.contextmanager
def _readers(ctx: BuildContext) -> Iterator[Callable[[str], RegistryClient]]:
    """A client per registry a ``from`` names: the build's own for its host, one opened (and closed
    after) for each other host, with that host's credentials only."""
    opened: dict[str, RegistryClient] = {}

    def reader(host: str) -> RegistryClient:
        if host == ctx.registry.target.host:
            return ctx.registry
        if host not in opened:
            opened[host] = (ctx.registry_for or _client)(host)
        return opened[host]

    try:
        yield reader
    finally:
        for client in opened.values():
            client.close()


def _client(host: str) -> RegistryClient:
    return RegistryClient(RegistryNamespace(host, "models"), reading_credentials_for(host))


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()
