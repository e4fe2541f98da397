"""Models released like images: a directory of model files as a CNCF ModelPack artifact (one raw layer per
file), and back. The manifest is a pure function of the files, the name and the format, so the same
directory pushes to the same digest and uploads nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RegistryError
from ..events import Emit, Event, discard
from .artifacts import MANIFEST_TYPE, canonical
from .client import Manifest, RegistryClient
from .modelfiles import LAYER_TYPES, ModelFile, scan_model

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_TYPE = "application/vnd.cncf.model.config.v1+json"
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"  # where oras (and other OCI artifact tools) read a file's name
UNTESTED = "org.cncf.model.file.mediatype.untested"

__all__ = [
    "ARTIFACT_TYPE",
    "CONFIG_TYPE",
    "FILEPATH",
    "LocalModel",
    "ModelFile",
    "ModelPack",
    "PushedModel",
    "describe",
    "inspect_model",
    "model_config",
    "model_manifest",
    "push_model",
    "read_model",
    "verify_model",
]


@dataclass(frozen=True)
class ModelPack:
    """A ModelPack artifact as read from a registry: its manifest digest, the config's name and format
    ("" when the config leaves them out) and its files in layer order."""

    digest: str
    name: str
    format: str
    files: tuple[ModelFile, ...]

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    def file(self, path: str) -> ModelFile | None:
        return next((file for file in self.files if file.path == path), None)


@dataclass(frozen=True)
class PushedModel:
    """What :func:`push_model` did: the manifest digest, the files in layer order, the bytes it sent
    (layers and config: 0 when the registry had everything) and the paths of the files it sent."""

    digest: str
    files: tuple[ModelFile, ...]
    uploaded_bytes: int
    uploaded: tuple[str, ...]


def model_config(name: str, format: str, files: tuple[ModelFile, ...]) -> bytes:
    """The model config blob: the descriptor's name, the config's format and the layers' diffIds."""
    if not name:
        raise ConfigError("a ModelPack model needs a name (the spec's descriptor.name is at least one character)")
    document: dict[str, Any] = {
        "descriptor": {"name": name},
        "config": {"format": format} if format else {},
        "modelfs": {"type": "layers", "diffIds": [file.diff_id for file in files]},
    }
    return canonical(document)


def _layer(file: ModelFile) -> dict[str, Any]:
    # oras names a pulled file by the title annotation, so both keys carry the path
    annotations = {FILEPATH: file.path, TITLE: file.path}
    if file.guessed:
        annotations[UNTESTED] = "true"
    return {"mediaType": file.media_type, "digest": file.digest, "size": file.size, "annotations": annotations}


def model_manifest(config: bytes, files: tuple[ModelFile, ...]) -> bytes:
    """The manifest's bytes: the config blob and one layer per file, in the files' order."""
    document = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": _digest(config), "size": len(config)},
        "layers": [_layer(file) for file in files],
    }
    return canonical(document)


@dataclass(frozen=True)
class LocalModel:
    """A model directory as it is pushed: its files (:func:`scan_model`, in layer order) and the name and
    format its ModelPack config gives it."""

    directory: Path
    name: str
    format: str
    files: tuple[ModelFile, ...]

    @classmethod
    def scan(cls, directory: Path, *, name: str, format: str) -> LocalModel:
        return cls(directory, name, format, scan_model(directory))

    def config(self) -> bytes:
        return model_config(self.name, self.format, self.files)

    def manifest(self) -> bytes:
        """The manifest's bytes: a pure function of the files, the name and the format."""
        return model_manifest(self.config(), self.files)


def push_model(
    registry: RegistryClient, repository: str, model: LocalModel, *, tag: str | None = None, emit: Emit = discard
) -> PushedModel:
    """Push ``model`` as a ModelPack artifact: blobs first (streamed from disk, only those the registry
    lacks), then the manifest under ``tag``, or by digest alone without one. The registry refuses a file
    that changed since ``model`` was scanned (its digest no longer matches)."""
    files, config = model.files, model.config()
    raw = model_manifest(config, files)
    sent: list[ModelFile] = []
    for file in files:
        if registry.upload_file(repository, model.directory / file.path, file.digest, file.size):
            sent.append(file)
            emit(Event("model.layer.uploaded", f"{file.path}: uploaded {file.size} bytes", data={"path": file.path}))
    config_bytes = 0
    if not registry.blob_exists(repository, _digest(config)):
        registry.upload_blob(repository, config)
        config_bytes = len(config)
    digest = registry.put_manifest(repository, tag or _digest(raw), raw, MANIFEST_TYPE)
    uploaded = sum(file.size for file in sent) + config_bytes
    emit(Event("model.pushed", f"{repository}@{digest}: {len(files)} files, {uploaded} bytes uploaded"))
    return PushedModel(digest, files, uploaded, tuple(file.path for file in sent))


def describe(manifest: Manifest, config: Any) -> tuple[ModelPack, list[str]]:
    """Read a ModelPack manifest (and its parsed config) into a description, and what about it is not
    as the spec says, each problem in a few words naming the file. Written by any tool: extra
    annotations, tar or compressed layers and other config keys are fine."""
    doc = manifest.json
    problems = list(_manifest_problems(doc))
    diff_ids, config_problems = _diff_ids(config, len(doc.get("layers") or []))
    problems += config_problems
    files: list[ModelFile] = []
    for index, layer in enumerate(doc.get("layers") or []):
        file = _file_of(index, layer, diff_ids[index])
        problems += _layer_problems(file, layer, seen={f.path for f in files})
        files.append(file)
    descriptor = config.get("descriptor") if isinstance(config, dict) else None
    settings = config.get("config") if isinstance(config, dict) else None
    name = str(descriptor.get("name", "")) if isinstance(descriptor, dict) else ""
    model_format = str(settings.get("format", "")) if isinstance(settings, dict) else ""
    return ModelPack(manifest.digest, name, model_format, tuple(files)), problems


def _manifest_problems(doc: Any) -> Iterator[str]:
    if doc.get("mediaType", MANIFEST_TYPE) != MANIFEST_TYPE:
        yield f"mediaType {doc.get('mediaType')} is not an OCI image manifest"
    if doc.get("artifactType") != ARTIFACT_TYPE:
        yield f"artifactType {doc.get('artifactType')} is not {ARTIFACT_TYPE}"
    if (doc.get("config") or {}).get("mediaType") != CONFIG_TYPE:
        yield f"config mediaType {(doc.get('config') or {}).get('mediaType')} is not {CONFIG_TYPE}"
    if not doc.get("layers"):
        yield "no layers: a model has at least one file"


def _diff_ids(config: Any, layers: int) -> tuple[list[str], list[str]]:
    """The config's diffIds, one per layer ("" where it has none), and what is wrong with its modelfs."""
    modelfs = config.get("modelfs") if isinstance(config, dict) else None
    found = modelfs.get("diffIds") if isinstance(modelfs, dict) else None
    if not isinstance(modelfs, dict) or modelfs.get("type") != "layers" or not isinstance(found, list):
        return [""] * layers, ['config: modelfs is not {"type": "layers", "diffIds": [...]}']
    problems = [] if len(found) == layers else [f"config: {len(found)} diffIds for {layers} layers"]
    return [str(d) for d in found[:layers]] + [""] * (layers - len(found)), problems


def _file_of(index: int, layer: dict[str, Any], diff_id: str) -> ModelFile:
    annotations = layer.get("annotations") or {}
    path = annotations.get(FILEPATH) or annotations.get(TITLE) or f"layer {index}"
    return ModelFile(
        path=str(path),
        media_type=str(layer.get("mediaType", "")),
        digest=str(layer.get("digest", "")),
        size=_size(layer.get("size")),
        diff_id=diff_id,
        guessed=annotations.get(UNTESTED) == "true",
    )


def _layer_problems(file: ModelFile, layer: dict[str, Any], seen: set[str]) -> Iterator[str]:
    if FILEPATH not in (layer.get("annotations") or {}):
        yield f"{file.path} ({file.digest}): no {FILEPATH} annotation"
    if file.path.startswith("/") or ".." in file.path.split("/"):
        yield f"{file.path}: not a relative path inside the model"
    if file.path in seen:
        yield f"{file.path}: named by more than one layer"
    if file.media_type not in LAYER_TYPES:
        yield f"{file.path}: media type {file.media_type} is not a ModelPack layer type"
    if file.diff_id and not file.media_type.endswith(("+gzip", "+zstd")) and file.diff_id != file.digest:
        yield f"{file.path}: digest {file.digest} does not match the config's diffId {file.diff_id}"


def inspect_model(registry: RegistryClient, repository: str, reference: str) -> ModelPack:
    """The ModelPack artifact at ``reference`` (a digest, or a tag); a RegistryError naming what is wrong
    when there is none or it is not one."""
    manifest, config = read_model(registry, repository, reference)
    pack, problems = describe(manifest, config)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RegistryError(f"{repository}@{manifest.digest}: not a ModelPack model: {problems[0]}{more}")
    return pack


def read_model(registry: RegistryClient, repository: str, reference: str) -> tuple[Manifest, Any]:
    """The manifest at ``reference`` and its parsed config blob (None when that is not JSON)."""
    manifest = registry.manifest(repository, reference)
    if manifest is None or manifest.is_index:
        what = "no such manifest" if manifest is None else "an index, not a model manifest"
        raise RegistryError(f"{registry.target.host}/{repository}:{reference}: {what}")
    descriptor = manifest.json.get("config") or {}
    if descriptor.get("mediaType") != CONFIG_TYPE:
        return manifest, None
    try:
        return manifest, json.loads(registry.blob(repository, str(descriptor.get("digest"))))
    except ValueError:
        return manifest, None


def verify_model(registry: RegistryClient, repository: str, reference: str, *, deep: bool = False) -> list[str]:
    """What is wrong with the ModelPack artifact at ``reference``, each in a few words naming the file;
    empty when nothing is.

    The manifest and config against the spec, then each layer against the registry: its blob is there
    with the manifest's size (HEAD) and, with ``deep``, the bytes it serves hash to the layer's digest
    (a streamed GET: what a corrupt mirror or storage serves shows there and nowhere else)."""
    try:
        manifest, config = read_model(registry, repository, reference)
    except RegistryError as exc:
        return [str(exc)]
    pack, problems = describe(manifest, config)
    for file in pack.files:
        try:
            problems += _blob_problems(registry, repository, file, deep=deep)
        except RegistryError as exc:
            problems.append(f"{file.path}: {exc}")
    return problems


def _blob_problems(registry: RegistryClient, repository: str, file: ModelFile, *, deep: bool) -> list[str]:
    size = registry.blob_size(repository, file.digest)
    if size is None:
        return [f"{file.path}: blob {file.digest} is not in the registry"]
    if size != file.size:
        return [f"{file.path}: size {file.size} does not match the registry's {size} bytes for {file.digest}"]
    served = registry.blob_hash(repository, file.digest) if deep else None
    if served is not None and served[0] != file.digest:
        return [f"{file.path}: digest {file.digest} does not match the bytes the registry serves ({served[0]})"]
    return []


def _size(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
