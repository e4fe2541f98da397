"""What ``buildx build --provenance=mode=max --push`` leaves in a registry, for the in-memory registry."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from tests.memregistry import MemoryRegistry, digest_of

IMAGE_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE = "application/vnd.oci.image.index.v1+json"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
CYCLONEDX = json.dumps(
    {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "components": [{"type": "library", "name": "pip", "version": "23.0.1"}, {"type": "library", "name": "tini"}],
    }
).encode()


def put_untagged(mem: MemoryRegistry, repo: str, body: bytes, media_type: str = IMAGE_TYPE) -> str:
    digest = digest_of(body)
    mem.manifests[(repo, digest)] = (body, media_type)
    return digest


def put_blob(mem: MemoryRegistry, body: bytes) -> str:
    mem.blobs[digest_of(body)] = body
    return digest_of(body)


def push_like_buildx(
    mem: MemoryRegistry,
    repo: str,
    tags: list[str],
    image: bytes,
    *,
    predicate: str | None = SLSA_V02,
    statement_subject: str | None = None,
) -> str:
    """An index of ``image`` (linux/amd64) and, unless ``predicate`` is None, its attestation manifest."""
    image_digest = put_untagged(mem, repo, image)
    entries: list[dict[str, object]] = [
        {
            "mediaType": IMAGE_TYPE,
            "digest": image_digest,
            "size": len(image),
            "platform": {"architecture": "amd64", "os": "linux"},
        }
    ]
    if predicate is not None:
        subject = (statement_subject or image_digest).removeprefix("sha256:")
        statement = json.dumps(
            {
                "_type": "https://in-toto.io/Statement/v0.1",
                "predicateType": predicate,
                "subject": [{"name": f"pkg:docker/{repo}", "digest": {"sha256": subject}}],
                "predicate": {"buildType": "https://mobyproject.org/buildkit@v1"},
            }
        ).encode()
        config = b'{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}'
        attestation = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": IMAGE_TYPE,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": put_blob(mem, config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.in-toto+json",
                        "digest": put_blob(mem, statement),
                        "size": len(statement),
                        "annotations": {"in-toto.io/predicate-type": predicate},
                    }
                ],
            }
        ).encode()
        entries.append(
            {
                "mediaType": IMAGE_TYPE,
                "digest": put_untagged(mem, repo, attestation),
                "size": len(attestation),
                "annotations": {
                    "vnd.docker.reference.digest": image_digest,
                    "vnd.docker.reference.type": "attestation-manifest",
                },
                "platform": {"architecture": "unknown", "os": "unknown"},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries}).encode()
    digest = put_untagged(mem, repo, index, INDEX_TYPE)
    for tag in tags:
        mem.tags[(repo, tag)] = digest
    return digest


def push_platforms(
    mem: MemoryRegistry, repo: str, tags: list[str], images: dict[str, bytes]
) -> tuple[str, dict[str, str]]:
    """A multi-platform index as buildx pushes one: an image per platform (``os/arch`` -> its manifest), each
    with its attestation manifest; the index's digest and each platform's manifest digest."""
    entries: list[dict[str, object]] = []
    digests: dict[str, str] = {}
    for platform, image in images.items():
        single = json.loads(mem.manifests[(repo, push_like_buildx(mem, repo, [], image))][0])
        os_name, _, arch = platform.partition("/")
        single["manifests"][0]["platform"] = {"architecture": arch, "os": os_name}
        digests[platform] = single["manifests"][0]["digest"]
        entries += single["manifests"]
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries}).encode()
    digest = put_untagged(mem, repo, index, INDEX_TYPE)
    for tag in tags:
        mem.tags[(repo, tag)] = digest
    return digest, digests


def in_toto_statement(name: str, digest: str, predicate_type: str, predicate: Mapping[str, Any]) -> dict[str, Any]:
    """An in-toto v1 statement about one image (``name``: its repository, as cosign names subjects)."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }
