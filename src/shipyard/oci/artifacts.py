"""One-file OCI artifacts: the channel ledger, SBOM referrers, a mirrored Trivy DB.

An image manifest whose config is ``{}`` and whose single layer is the file, pushed with the
blobs first, as the OCI distribution spec wants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .client import Manifest, RegistryClient

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = b"{}"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"


def canonical(document: dict[str, Any]) -> bytes:
    """Compact, key-sorted JSON: the same document always has the same digest."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class OneFile:
    """What a one-file artifact's manifest says of its file: the layer's media type and title, the
    manifest's ``artifactType`` (None: left out) and its config's media type."""

    layer_type: str
    title: str
    artifact_type: str | None = None
    config_type: str = EMPTY_CONFIG_TYPE


def artifact_manifest(
    registry: RegistryClient,
    repository: str,
    body: bytes,
    file: OneFile,
    *,
    subject: Manifest | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    """Upload ``body`` and the empty config; the manifest's bytes, ready to PUT under any reference."""
    layer = registry.upload_blob(repository, body)
    config = registry.upload_blob(repository, EMPTY_CONFIG)
    config_descriptor: dict[str, Any] = {"mediaType": file.config_type, "digest": config, "size": len(EMPTY_CONFIG)}
    if file.config_type == EMPTY_CONFIG_TYPE:
        config_descriptor["data"] = "e30="  # the spec's inline form of the empty config
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_descriptor,
        "layers": [
            {
                "mediaType": file.layer_type,
                "digest": layer,
                "size": len(body),
                "annotations": {"org.opencontainers.image.title": file.title},
            }
        ],
    }
    if file.artifact_type:
        manifest["artifactType"] = file.artifact_type
    if subject is not None:
        manifest["subject"] = {"mediaType": subject.media_type, "digest": subject.digest, "size": len(subject.raw)}
    if annotations:
        manifest["annotations"] = annotations
    return canonical(manifest)


def push_document(registry: RegistryClient, repository: str, tag: str, body: bytes, *, media_type: str) -> str:
    """``body`` as a one-file artifact under ``repository:tag`` (a ledger, say); the manifest's digest."""
    raw = artifact_manifest(registry, repository, body, OneFile(media_type, f"{tag}.json", media_type))
    return registry.put_manifest(repository, tag, raw, MANIFEST_TYPE)


def pull_document(registry: RegistryClient, repository: str, tag: str) -> Any | None:
    """The JSON document :func:`push_document` put under ``repository:tag``; None when there is no such tag.

    ``ValueError`` (with what is wrong) when the tag holds something else."""
    manifest = registry.manifest(repository, tag)
    if manifest is None:
        return None
    try:
        layer = manifest.json["layers"][0]["digest"]
        return json.loads(registry.blob(repository, layer))
    except (KeyError, IndexError, TypeError) as exc:
        raise ValueError(f"not a one-file artifact ({exc})") from None
