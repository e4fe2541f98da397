"""Attestations of a pushed image: BuildKit's SLSA provenance inside its index, and our CycloneDX SBOM
(one per platform manifest) beside it as an OCI 1.1 referrer, found through the referrers tag schema
(``sha256-<hex>``) on every registry."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..errors import VerifyFailed
from .artifacts import MANIFEST_TYPE, OneFile, artifact_manifest, canonical
from .client import INDEX_TYPES, Manifest, RegistryClient

INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
CYCLONEDX_TYPE = "application/vnd.cyclonedx+json"
REFERENCE_TYPE = "vnd.docker.reference.type"
REFERENCE_DIGEST = "vnd.docker.reference.digest"
PREDICATE_TYPE = "in-toto.io/predicate-type"
SLSA_PROVENANCE = "https://slsa.dev/provenance/"


class AttestationMissing(VerifyFailed):
    """An attestation is absent or does not belong to the image; the message says which and why."""


@dataclass(frozen=True)
class Provenance:
    manifest: str  # digest of the attestation manifest inside the index
    predicate_type: str


@dataclass(frozen=True)
class Sbom:
    manifest: str  # digest of the SBOM artifact manifest
    subject: str  # digest of the image it describes
    document: bytes  # the CycloneDX JSON


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``<alg>-<hex>``."""
    algorithm, _, hex_digest = digest.partition(":")
    if not algorithm or not hex_digest:
        raise ValueError(f"{digest!r} is not a digest")
    return f"{algorithm}-{hex_digest}"


def _attestation_entries(index: Manifest, image_digest: str) -> list[dict[str, Any]]:
    if not index.is_index:
        return []
    return [
        entry
        for entry in index.json.get("manifests", [])
        if (entry.get("annotations") or {}).get(REFERENCE_TYPE) == "attestation-manifest"
        and entry["annotations"].get(REFERENCE_DIGEST) == image_digest
    ]


def image_platforms(index: Manifest) -> dict[str, str]:
    """``os/arch`` -> the platform manifest's digest, for each image an index lists (its attestation
    manifests, ``unknown/unknown``, left out); a single manifest: none."""
    if not index.is_index:
        return {}
    found: dict[str, str] = {}
    for entry in index.json.get("manifests", []):
        platform = entry.get("platform") or {}
        name = f"{platform.get('os')}/{platform.get('architecture')}"
        if name != "unknown/unknown" and "os" in platform:
            found.setdefault(name, str(entry["digest"]))
    return found


def sbom_subject(index_digest: str, image_digest: str, multi_platform: bool) -> str:
    """The digest an image's SBOM refers to: the platform manifest in a multi-platform index, else the index."""
    return image_digest if multi_platform else index_digest


def has_provenance(index: Manifest, image_digest: str) -> bool:
    """Whether ``index`` lists an attestation manifest for ``image_digest`` (no request: a cheap pre-check)."""
    return bool(_attestation_entries(index, image_digest))


def listed_provenance(index: Manifest, image_digest: str) -> str | None:
    """The digest of the attestation manifest ``index`` lists for ``image_digest``, read from the index
    alone (an image found by its inputs was checked when it was built; verify reads the statement)."""
    entries = _attestation_entries(index, image_digest)
    return str(entries[0]["digest"]) if entries else None


def find_provenance(registry: RegistryClient, repository: str, index: Manifest, image_digest: str) -> Provenance:
    """The SLSA provenance BuildKit put in ``index`` for the platform manifest ``image_digest``."""
    if not index.is_index:
        raise AttestationMissing(f"{index.digest[:19]} is a single manifest, not an index with attestations")
    entries = _attestation_entries(index, image_digest)
    if not entries:
        raise AttestationMissing(f"no attestation manifest for {image_digest[:19]} in index {index.digest[:19]}")
    for entry in entries:
        manifest = registry.manifest(repository, entry["digest"])
        if manifest is None:
            raise AttestationMissing(f"attestation manifest {entry['digest'][:19]} is not in the registry")
        for layer in manifest.json.get("layers", []):
            predicate = (layer.get("annotations") or {}).get(PREDICATE_TYPE, "")
            if predicate.startswith(SLSA_PROVENANCE):
                _check_statement(registry.blob(repository, layer["digest"]), predicate, image_digest)
                return Provenance(manifest.digest, predicate)
    raise AttestationMissing(f"attestation of {image_digest[:19]} has no {SLSA_PROVENANCE}* statement")


def _check_statement(raw: bytes, predicate: str, image_digest: str) -> None:
    try:
        statement = json.loads(raw)
        subjects = {"sha256:" + s["digest"]["sha256"] for s in statement.get("subject", [])}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise AttestationMissing(f"unreadable in-toto statement ({exc})") from None
    if statement.get("predicateType") != predicate:
        raise AttestationMissing(f"statement predicateType {statement.get('predicateType')!r}, annotated {predicate}")
    if image_digest not in subjects:
        raise AttestationMissing(f"provenance statement is about {sorted(subjects)}, not {image_digest[:19]}")


def _referrers(registry: RegistryClient, repository: str, subject: str) -> list[dict[str, Any]]:
    """The descriptors listed under the referrers tag of ``subject`` (none when the tag is absent)."""
    found = registry.manifest(repository, referrers_tag(subject))
    if found is None:
        return []
    if found.media_type not in INDEX_TYPES:
        raise AttestationMissing(f"tag {referrers_tag(subject)} holds a {found.media_type}, not a referrers index")
    return list(found.json.get("manifests") or [])


def find_sbom(registry: RegistryClient, repository: str, subject: str) -> str | None:
    """The digest of the newest CycloneDX referrer of ``subject``, from the referrers tag only."""
    sboms = [d for d in _referrers(registry, repository, subject) if d.get("artifactType") == CYCLONEDX_TYPE]
    return str(sboms[-1]["digest"]) if sboms else None


def read_sbom(registry: RegistryClient, repository: str, subject: str) -> Sbom:
    """The SBOM of ``subject`` with its document, checked to name ``subject`` as its subject."""
    digest = find_sbom(registry, repository, subject)
    if digest is None:
        raise AttestationMissing(f"no {CYCLONEDX_TYPE} referrer under tag {referrers_tag(subject)}")
    manifest = registry.manifest(repository, digest)
    if manifest is None:
        raise AttestationMissing(f"referrer {digest[:19]} is listed but not in the registry")
    doc = manifest.json
    named = (doc.get("subject") or {}).get("digest")
    if named != subject:
        raise AttestationMissing(f"SBOM {digest[:19]} has subject {named}, not {subject[:19]}")
    layers = [layer for layer in doc.get("layers", []) if layer.get("mediaType") == CYCLONEDX_TYPE]
    if doc.get("artifactType") != CYCLONEDX_TYPE or not layers:
        raise AttestationMissing(f"SBOM {digest[:19]} is not a {CYCLONEDX_TYPE} artifact")
    return Sbom(manifest.digest, subject, registry.blob(repository, layers[0]["digest"]))


def push_sbom(
    registry: RegistryClient, repository: str, subject: Manifest, document: bytes, annotations: dict[str, str]
) -> str:
    """Push ``document`` as a referrer of ``subject`` and list it under the referrers tag; its digest."""
    file = OneFile(CYCLONEDX_TYPE, "sbom.cdx.json", CYCLONEDX_TYPE)
    raw = artifact_manifest(registry, repository, document, file, subject=subject, annotations=annotations)
    digest = registry.put_manifest(repository, _digest_of(raw), raw, MANIFEST_TYPE)
    _add_referrer(
        registry,
        repository,
        subject.digest,
        {
            "mediaType": MANIFEST_TYPE,
            "digest": digest,
            "size": len(raw),
            "artifactType": CYCLONEDX_TYPE,
            "annotations": annotations,
        },
    )
    return digest


def _add_referrer(registry: RegistryClient, repository: str, subject: str, descriptor: dict[str, Any]) -> None:
    """Read-modify-write of the referrers index (the spec's tag schema has no atomic update)."""
    kept = [d for d in _referrers(registry, repository, subject) if d.get("digest") != descriptor["digest"]]
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [*kept, descriptor]}
    registry.put_manifest(repository, referrers_tag(subject), canonical(index), INDEX_TYPE)


def _digest_of(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()
