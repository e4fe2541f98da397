"""Release records: every build unit of a release → pushed digest and what is known of it, and every
model the release's services were built with → its ModelPack artifact.

Written atomically (temp file + ``os.replace``) so a reader never sees a truncated record.
Every stage after the build reads the record, not the engine's local state. The gates' verdicts are
typed (``verdicts.py``) and written back as the JSON held them, so the file's shape stays schema 2.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .oci.reference import OCI_TAG_RE
from .state import make_dirs, project_state_dir
from .verdicts import ModelVerdicts, UnitVerdicts, read_verdicts
from .versions import check_schema, writer

SCHEMA = 2  # 2: aliases, platforms, models and written_by; 1 is still read


@dataclass
class UnitRecord:
    profile: str
    image: str
    kind: str
    platform: str
    repository: str
    tag: str
    digest: str
    size: int
    parent: str  # parent reference by digest
    duration_s: float
    steps: int  # RUN/COPY/ADD steps of the Dockerfile
    cache_hits: int  # of those, served from the (local or registry) build cache
    # What the image must show, fixed at build time from the inputs that rendered it
    # (user, env, labels, port, size budget), so verify needs only the record and the registry.
    expect: dict[str, Any] = field(default_factory=dict)
    verdicts: UnitVerdicts = field(default_factory=UnitVerdicts)  # a mapping (the JSON's) is read into it
    inputs: dict[str, Any] = field(default_factory=dict)  # the input digest and what went into it
    reused_from: str = ""  # release that built this image when it was reused instead of built
    platforms: list[str] = field(default_factory=list)  # a multi-platform unit's index: every platform in it
    # kind ("provenance", "sbom") -> digest of the attestation's manifest in the unit's repository
    attestations: dict[str, str] = field(default_factory=dict)
    # the platform manifest of ``platform`` inside the index ``digest``: what a single-platform
    # child's FROM names, so a parent rebuilt from cache (new provenance, same image) moves no child
    image_digest: str = ""
    # a service unit: model name -> the digest of the ModelPack artifact it was released with
    models: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.verdicts = read_verdicts(self.verdicts, UnitVerdicts)

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"

    @property
    def parent_ref(self) -> str:
        """How a child names this unit in its FROM: the platform manifest, or the index of a
        multi-platform unit (one FROM serves every platform of the child's build)."""
        if self.platforms or not self.image_digest:
            return self.ref
        return f"{self.repository}@{self.image_digest}"


@dataclass(frozen=True)
class ModelFileRecord:
    """One file of a model: its path inside the model directory, its layer's digest and size."""

    path: str
    digest: str
    size: int


@dataclass
class ModelRecord:
    """One model of the release: where its ModelPack artifact is and what it holds.

    ``source`` is ``path`` (pushed from ``origin``, a directory of the project) or ``from`` (an existing
    artifact, ``origin`` its pinned reference; ``repository`` is where the release reads it: the
    build's registry when the artifact could be tagged there, else its own repository).
    """

    repository: str  # host/namespace/models/name, as a unit's repository
    tag: str  # the release tag, "" where the artifact could not be tagged (another registry)
    digest: str
    format: str
    files: list[ModelFileRecord]
    size: int  # the files' bytes
    source: str  # "path" or "from"
    origin: str
    budget_mb: int | None = None  # the catalog's size_budget_mb, which verify holds the artifact to
    verdicts: ModelVerdicts = field(default_factory=ModelVerdicts)  # a mapping (the JSON's) is read into it

    def __post_init__(self) -> None:
        self.verdicts = read_verdicts(self.verdicts, ModelVerdicts)

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        rest = dict(data)
        files = [ModelFileRecord(**file) for file in rest.pop("files")]
        return cls(files=files, **rest)


@dataclass
class ReleaseRecord:
    release: str
    revision: str
    created: str
    registry: str
    units: dict[str, UnitRecord] = field(default_factory=dict)
    schema: int = SCHEMA
    # semver tags ("1.4.2", "1.4") every unit was also pushed under, from the git tags on the commit
    aliases: list[str] = field(default_factory=list)
    models: dict[str, ModelRecord] = field(default_factory=dict)  # absent from records written before models
    written_by: str = field(default_factory=writer)  # "shipyard <version>" ("" in schema 1 records)

    def to_json(self) -> str:
        """The record as this shipyard writes it: of its schema, and saying so."""
        data = asdict(self) | {"schema": SCHEMA, "written_by": writer()}
        for key, unit in self.units.items():
            data["units"][key]["verdicts"] = unit.verdicts.to_dict()
        for name, model in self.models.items():
            data["models"][name]["verdicts"] = model.verdicts.to_dict()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str) -> ReleaseRecord:
        try:
            data = json.loads(text)
            data["schema"] = check_schema(data, SCHEMA, "release record", source)
            data.setdefault("written_by", "")
            units = {key: UnitRecord(**value) for key, value in data.pop("units").items()}
            models = {name: ModelRecord.from_dict(value) for name, value in data.pop("models", {}).items()}
            return cls(units=units, models=models, **data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ConfigError(f"{source}: not a shipyard release record ({exc})") from None


def records_dir(project: Path) -> Path:
    return project_state_dir(project) / "releases"


def write_atomic(path: Path, text: str) -> None:
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_record(project: Path, record: ReleaseRecord) -> Path:
    path = records_dir(project) / f"{record.release}.json"
    write_atomic(path, record.to_json())
    return path


def load_record(path: Path) -> ReleaseRecord:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: release record not found") from None
    return ReleaseRecord.from_json(text, source=str(path))


def find_record(project: Path, release: str | None, *, flag: str = "RELEASE") -> Path:
    """The record of ``release`` (a release tag, or an alias such as ``1.4``), or the newest one when no
    release is named.

    ``release`` becomes a file name and a tag, so it must be an OCI tag (no ``/``, no ``..``).
    ``flag`` is how the command line spells it, for the error.
    """
    directory = records_dir(project)
    if release:
        if not OCI_TAG_RE.match(release):
            raise ConfigError(
                f"{flag} {release!r}: not a valid OCI tag; expected [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}, "
                f"a release tag like 20250111-656873b3"
            )
        path = directory / f"{release}.json"
        if path.is_file():
            return path
        if aliased := _newest_with_alias(directory, release):
            return aliased
        known = sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []
        raise ConfigError(
            f"{flag} {release}: no release record {path}, nor one with the alias {release}"
            + (f"; known: {', '.join(known[-5:])}" if known else "; run `shipyard build` first")
        )
    records = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime) if directory.is_dir() else []
    if not records:
        raise ConfigError(f"{directory}: no release records; run `shipyard build` first")
    return records[-1]


def _newest_with_alias(directory: Path, alias: str) -> Path | None:
    """The newest record that lists ``alias``: ``1.4`` is on every 1.4.x release, the registry's tag on the
    last one. Newest by commit date, not by the file's time, which verify, scan and canary change."""
    found: list[tuple[str, float, Path]] = []
    for path in directory.glob("*.json") if directory.is_dir() else []:
        try:
            record = load_record(path)
        except ConfigError:  # an unreadable record names no alias; it fails when it is named itself
            continue
        if alias in record.aliases:
            found.append((record.created, path.stat().st_mtime, path))
    return max(found)[2] if found else None


def reports_dir(project: Path, release: str) -> Path:
    return project_state_dir(project) / "reports" / release
