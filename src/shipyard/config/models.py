"""The catalog's models (``[models.<name>]``): a project directory (``path``) the build pushes, or an
existing artifact pinned by digest (``from``), each checked when the catalog is read, so a bad model stops
the build before anything is pushed."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError
from ..oci.modelfiles import model_paths
from ..oci.reference import HOST_RE, PATH_RE
from .reader import Table, did_you_mean

MODEL_KEYS = ("path", "from", "format", "size_budget_mb", "description")
MODEL_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")  # one repository path component
PINNED_RE = re.compile(r"^(?P<host>[^/@\s]+)/(?P<repository>[^@:\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
DEFAULT_MODEL_DIR = "/models"  # the model cache dir the templates give every service image (MODEL_CACHE_DIR)


@dataclass(frozen=True)
class PinnedArtifact:
    """An artifact named by digest: ``host/repository@sha256:…``."""

    host: str
    repository: str
    digest: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}@{self.digest}"


@dataclass(frozen=True)
class ModelSpec:
    """One model of the catalog: exactly one of ``path`` (a directory inside the project, resolved) and
    ``artifact`` (``from``, pinned by digest)."""

    name: str
    format: str
    path: Path | None = None
    artifact: PinnedArtifact | None = None
    size_budget_mb: int | None = None
    description: str = ""

    @property
    def source(self) -> str:
        """Where the model comes from, as the release record says it: ``path`` or ``from``."""
        return "path" if self.path is not None else "from"


def parse_models(t: Table, root: Path) -> dict[str, ModelSpec]:
    """Every ``[models.<name>]`` table, each checked against the project at ``root``."""
    return {name: _parse_model(t.table(name, required=True), name, root) for name in t.data}


def _parse_model(t: Table, name: str, root: Path) -> ModelSpec:
    t.only(MODEL_KEYS)
    if not MODEL_NAME_RE.match(name):
        raise t.error(None, f"model name {name!r}: use lowercase letters, digits, '.', '_' and '-'")
    if "path" in t.data and "from" in t.data:
        raise t.error("from", "give either path (a directory of the project) or from (an artifact by digest), not both")
    if "path" not in t.data and "from" not in t.data:
        raise t.error(
            "path",
            "missing (required): give path (a directory of the project) or from (a ModelPack artifact, "
            "host/repository@sha256:<digest>)",
        )
    model_format = t.req("format", str, expected='the model\'s format, e.g. "safetensors" or "gguf"')
    if not model_format.strip():
        raise t.error("format", 'expected the model\'s format, e.g. "safetensors" or "gguf", got ""')
    budget = t.data.get("size_budget_mb")
    if budget is not None and t.req("size_budget_mb", int) <= 0:
        raise t.error("size_budget_mb", f"expected a positive number of MB, got {budget}")
    path = _directory(t, root) if "path" in t.data else None
    artifact = _pinned(t) if "from" in t.data else None
    return ModelSpec(
        name=name,
        format=model_format,
        path=path,
        artifact=artifact,
        size_budget_mb=budget,
        description=t.opt("description", str, ""),
    )


def _directory(t: Table, root: Path) -> Path:
    """``path``, resolved: a directory inside the project, holding model files, no symlink leading out."""
    given = t.req("path", str)
    project = root.resolve()
    if PurePosixPath(given).is_absolute():
        raise t.error("path", f"{given!r} is absolute; expected a directory relative to the project")
    directory = (project / given).resolve()
    if not directory.is_relative_to(project):
        raise t.error("path", f"{given!r} is outside the project ({directory}); expected a directory of the project")
    if not directory.is_dir():
        raise t.error("path", f"directory {given!r} does not exist; expected a directory of model files")
    if leaving := _symlink_out(directory, project):
        link, points_to = leaving
        raise t.error(
            "path",
            f"{link.relative_to(project)} is a symlink to {points_to}, outside the project; copy the file "
            f"in, or push it elsewhere and name it with from",
        )
    try:
        model_paths(directory)
    except ConfigError:
        raise t.error("path", f"{given!r} has no model files (hidden files and directories are left out)") from None
    return directory


def _symlink_out(directory: Path, project: Path) -> tuple[Path, Path] | None:
    """The first symlink under ``directory`` (as the model's files are listed: hidden ones left out) that
    resolves outside ``project``, with where it points."""
    for base, dirs, names in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for entry in (*dirs, *sorted(n for n in names if not n.startswith("."))):
            full = Path(base, entry)
            if full.is_symlink() and not (target := full.resolve()).is_relative_to(project):
                return full, target
    return None


def _pinned(t: Table) -> PinnedArtifact:
    given = t.req("from", str)
    found = PINNED_RE.match(given)
    if found is None:
        raise t.error(
            "from",
            f"{given!r} is not pinned by digest; expected host/repository@sha256:<digest> (the artifact a "
            f"release pins cannot move)",
        )
    host, repository = found["host"], found["repository"]
    looks_like_host = "." in host or ":" in host or host == "localhost"
    if not (HOST_RE.match(host) and looks_like_host and PATH_RE.match(repository)):
        raise t.error("from", f"{given!r}: expected host[:port]/repository@sha256:<digest>, e.g. ghcr.io/acme/m@…")
    return PinnedArtifact(host, repository, found["digest"])


def check_model_names(t: Table, key: str, names: Iterable[str], models: Mapping[str, ModelSpec]) -> None:
    """Each of ``names`` (a service's ``models``, read from ``t[key]``) is a model of the catalog."""
    for i, name in enumerate(names):
        if name not in models:
            known = ", ".join(models) or "none ([models.<name>] tables declare them)"
            raise t.error(
                f"{key}[{i}]", f"unknown model {name!r}{did_you_mean(name, models)}; the catalog's models: {known}"
            )


def check_model_dir(t: Table, key: str, value: str) -> None:
    if not value.startswith("/") or value == "/" or ".." in value.split("/") or any(c.isspace() for c in value):
        raise t.error(key, f"expected an absolute directory in the container like {DEFAULT_MODEL_DIR}, got {value!r}")
