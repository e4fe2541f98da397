"""Mirror a Trivy vulnerability DB into any OCI registry, as the artifact Trivy pulls.

An air-gapped site downloads ``trivy.db`` + ``metadata.json`` once, pushes them with
``shipyard trivy-db push``, and scans with ``--db-repository <that ref>``.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from ...errors import ConfigError
from ...oci.artifacts import MANIFEST_TYPE, OneFile, artifact_manifest
from ...oci.client import RegistryClient

DB_LAYER_TYPE = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
DB_CONFIG_TYPE = "application/vnd.aquasec.trivy.config.v1+json"
DB_FILES = ("trivy.db", "metadata.json")


def db_archive(source: Path) -> bytes:
    """A tar.gz holding trivy.db and metadata.json, from a directory or an existing archive."""
    if source.is_dir():
        missing = [name for name in DB_FILES if not (source / name).is_file()]
        if missing:
            raise ConfigError(f"{source}: not a Trivy DB directory (missing {', '.join(missing)})")
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as tar:
            for name in DB_FILES:
                tar.add(source / name, arcname=name)
        return out.getvalue()
    if source.is_file() and source.name.endswith((".tar.gz", ".tgz")):
        data = source.read_bytes()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            names = {Path(n).name for n in tar.getnames()}
        if not set(DB_FILES) <= names:
            raise ConfigError(f"{source}: archive lacks {', '.join(sorted(set(DB_FILES) - names))}")
        return data
    raise ConfigError(f"{source}: expected a directory with trivy.db and metadata.json, or a .tar.gz of them")


def push_db(registry: RegistryClient, repository: str, tag: str, source: Path) -> str:
    """Push the DB as Trivy expects it: one tar+gzip layer titled *.tar.gz, Trivy's config type."""
    layer = db_archive(source)
    file = OneFile(DB_LAYER_TYPE, "db.tar.gz", config_type=DB_CONFIG_TYPE)
    raw = artifact_manifest(registry, repository, layer, file)
    return registry.put_manifest(repository, tag, raw, MANIFEST_TYPE)
