"""A model directory as the files of a ModelPack artifact: which files, in which order, of which kind.

The order (paths sorted as POSIX strings) and the hash of each file are all that reach the manifest, so
the same files give the same manifest digest on any machine, whatever their mtimes or owners. Files
are hashed in chunks: a multi-GB weight file is never held in memory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError

MEDIA_TYPE = "application/vnd.cncf.model.{kind}.v1.{form}"
KINDS = ("weight", "weight.config", "doc", "code", "dataset")
FORMS = ("raw", "tar", "tar+gzip", "tar+zstd")
LAYER_TYPES = frozenset(MEDIA_TYPE.format(kind=kind, form=form) for kind in KINDS for form in FORMS)

_WEIGHT = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".ggml", ".onnx", ".h5", ".keras", ".pb"}
_WEIGHT |= {".tflite", ".msgpack", ".npz", ".npy", ".ot", ".mlmodel", ".pdparams", ".engine", ".plan"}
# what a runtime reads beside the weights: config.json, tokenizer.json / tokenizer.model, vocab, merges
_WEIGHT_CONFIG = {".json", ".yaml", ".yml", ".toml", ".txt", ".model", ".tiktoken", ".vocab", ".spm", ".jinja"}
_DOC = {".md", ".rst", ".pdf", ".html"}
_DOC_NAMES = {"README", "LICENSE", "LICENCE", "NOTICE", "COPYING", "CHANGELOG", "USE_POLICY", "MODEL_CARD"}
_CODE = {".py", ".sh", ".ipynb", ".js", ".ts", ".c", ".cc", ".cpp", ".h", ".cu", ".rs", ".go", ".java", ".lua"}
_DATASET = {".csv", ".tsv", ".parquet", ".jsonl", ".arrow", ".tfrecord"}
_BY_SUFFIX = {
    **dict.fromkeys(_WEIGHT, "weight"),
    **dict.fromkeys(_WEIGHT_CONFIG, "weight.config"),
    **dict.fromkeys(_DOC, "doc"),
    **dict.fromkeys(_CODE, "code"),
    **dict.fromkeys(_DATASET, "dataset"),
}


@dataclass(frozen=True)
class ModelFile:
    """One file of a model and the layer that carries it.

    ``path`` is relative and POSIX (the layer's ``org.cncf.model.filepath``); ``digest`` and ``size`` are
    the layer blob's; ``diff_id`` is the config's hash of the uncompressed content, the digest itself
    for a raw layer; ``guessed`` says the kind came from no known suffix (the spec's ``untested``)."""

    path: str
    media_type: str
    digest: str
    size: int
    diff_id: str
    guessed: bool = False

    @property
    def archived(self) -> bool:
        """A tar layer (another tool's): the file (or directory) is inside an archive, not the blob itself."""
        return self.media_type.rsplit(".v1.", 1)[-1].startswith("tar")


def media_type_of(path: str) -> tuple[str, bool]:
    """The raw layer type for a file, and whether it is a guess.

    Weights go uncompressed (the spec's recommendation: they do not compress, and a runtime can mount
    them as they are). A file of no known kind is taken for weights, marked as a guess."""
    name = PurePosixPath(path)
    if name.name.split(".", 1)[0].upper() in _DOC_NAMES:
        return MEDIA_TYPE.format(kind="doc", form="raw"), False
    kind = _BY_SUFFIX.get(name.suffix.lower())
    return MEDIA_TYPE.format(kind=kind or "weight", form="raw"), kind is None


def file_digest(path: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    """The file's sha256 digest and its length, from one read in ``chunk`` pieces into one buffer."""
    hasher, size, buffer = hashlib.sha256(), 0, bytearray(chunk)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as stream:
        while read := stream.readinto(buffer):
            hasher.update(view[:read])
            size += read
    return "sha256:" + hasher.hexdigest(), size


def model_paths(directory: Path) -> list[str]:
    """Every regular file under ``directory`` (symlinks to files too), sorted, as relative POSIX paths.

    Hidden files and directories (``.git``, ``.cache``, ``.gitattributes``) are left out: they are a
    checkout's or a download tool's bookkeeping, not the model, and would change the digest."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: not a directory of model files", file=str(directory))
    found = []
    for root, dirs, names in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            full = Path(root, name)
            if not name.startswith(".") and full.is_file():
                found.append(full.relative_to(directory).as_posix())
    if not found:
        raise ConfigError(f"{directory}: no model files in it", file=str(directory))
    return sorted(found)


def scan_model(directory: Path) -> tuple[ModelFile, ...]:
    """The files of the model in ``directory``, in layer order, each hashed (one read, in chunks)."""
    files = []
    for path in model_paths(directory):
        digest, size = file_digest(directory / path)
        media_type, guessed = media_type_of(path)
        files.append(ModelFile(path, media_type, digest, size, digest, guessed))
    return tuple(files)
