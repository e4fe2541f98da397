"""Provenance look-up and the SBOM referrer (artifact + referrers tag index) against an in-memory registry."""

from __future__ import annotations

import json
import re

import pytest

from shipyard.oci.attestations import (
    CYCLONEDX_TYPE,
    AttestationMissing,
    find_provenance,
    find_sbom,
    has_provenance,
    push_sbom,
    read_sbom,
    referrers_tag,
)
from shipyard.oci.client import Manifest, RegistryClient
from tests.attested import CYCLONEDX, IMAGE_TYPE, push_like_buildx
from tests.memregistry import MemoryRegistry

REPO = "acme/cpu/svc"
IMAGE = json.dumps({"schemaVersion": 2, "mediaType": IMAGE_TYPE, "config": {}, "layers": []}).encode()


def index_and_image(registry: RegistryClient, digest: str) -> tuple[Manifest, Manifest]:
    index = registry.manifest(REPO, digest)
    assert index is not None
    return index, registry.for_platform(REPO, index, "linux/amd64")


def test_referrers_tag_is_the_spec_fallback_tag() -> None:
    assert referrers_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32
    with pytest.raises(ValueError):
        referrers_tag("latest")


def test_provenance_of_a_buildx_index(mem: MemoryRegistry, registry: RegistryClient) -> None:
    index, image = index_and_image(registry, push_like_buildx(mem, REPO, ["t"], IMAGE))
    assert has_provenance(index, image.digest)
    found = find_provenance(registry, REPO, index, image.digest)
    assert found.predicate_type == "https://slsa.dev/provenance/v0.2"
    assert found.manifest == index.json["manifests"][1]["digest"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"predicate": None}, "no attestation manifest for"),
        ({"predicate": "https://spdx.dev/Document"}, "no https://slsa.dev/provenance/* statement"),
        ({"statement_subject": "sha256:" + "0" * 64}, "provenance statement is about"),
    ],
)
def test_provenance_missing_or_not_about_the_image(
    mem: MemoryRegistry, registry: RegistryClient, kwargs: dict[str, str | None], message: str
) -> None:
    index, image = index_and_image(registry, push_like_buildx(mem, REPO, ["t"], IMAGE, **kwargs))  # type: ignore[arg-type]
    with pytest.raises(AttestationMissing, match=re.escape(message)):
        find_provenance(registry, REPO, index, image.digest)


def test_a_single_manifest_has_no_provenance(mem: MemoryRegistry, registry: RegistryClient) -> None:
    mem.put(REPO, "plain", IMAGE, IMAGE_TYPE)
    plain = registry.manifest(REPO, "plain")
    assert plain is not None and not has_provenance(plain, plain.digest)
    with pytest.raises(AttestationMissing, match="single manifest"):
        find_provenance(registry, REPO, plain, plain.digest)


def test_push_sbom_refers_to_the_image_and_lists_it_under_the_referrers_tag(
    mem: MemoryRegistry, registry: RegistryClient
) -> None:
    digest = push_like_buildx(mem, REPO, ["t"], IMAGE)
    index, _ = index_and_image(registry, digest)
    assert find_sbom(registry, REPO, digest) is None
    sbom = push_sbom(registry, REPO, index, CYCLONEDX, {"org.opencontainers.image.description": "SBOM of svc"})

    artifact = json.loads(mem.manifests[(REPO, sbom)][0])
    assert artifact["artifactType"] == CYCLONEDX_TYPE
    assert artifact["subject"] == {"mediaType": index.media_type, "digest": digest, "size": len(index.raw)}
    assert artifact["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert mem.blobs[artifact["config"]["digest"]] == b"{}"
    assert mem.blobs[artifact["layers"][0]["digest"]] == CYCLONEDX

    referrers = json.loads(mem.manifests[(REPO, mem.tags[(REPO, referrers_tag(digest))])][0])
    assert referrers["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(d["digest"], d["artifactType"]) for d in referrers["manifests"]] == [(sbom, CYCLONEDX_TYPE)]
    assert referrers["manifests"][0]["annotations"] == {"org.opencontainers.image.description": "SBOM of svc"}

    assert find_sbom(registry, REPO, digest) == sbom
    read = read_sbom(registry, REPO, digest)
    assert (read.manifest, read.subject, read.document) == (sbom, digest, CYCLONEDX)


def test_referrers_index_keeps_other_referrers_and_lists_each_once(
    mem: MemoryRegistry, registry: RegistryClient
) -> None:
    digest = push_like_buildx(mem, REPO, ["t"], IMAGE)
    index, _ = index_and_image(registry, digest)
    other = {"mediaType": IMAGE_TYPE, "digest": "sha256:" + "5" * 64, "size": 10, "artifactType": "application/x"}
    mem.put(
        REPO,
        referrers_tag(digest),
        json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [other]}
        ).encode(),
        "application/vnd.oci.image.index.v1+json",
    )
    first = push_sbom(registry, REPO, index, CYCLONEDX, {})
    again = push_sbom(registry, REPO, index, CYCLONEDX, {})
    assert again == first
    listed = json.loads(mem.manifests[(REPO, mem.tags[(REPO, referrers_tag(digest))])][0])["manifests"]
    assert [d["digest"] for d in listed] == [other["digest"], first]


def test_read_sbom_refuses_a_referrer_of_another_image(mem: MemoryRegistry, registry: RegistryClient) -> None:
    digest = push_like_buildx(mem, REPO, ["t"], IMAGE)
    other_digest = push_like_buildx(mem, REPO, ["u"], IMAGE.replace(b"[]}", b'[], "x": 1}'))
    other, _ = index_and_image(registry, other_digest)
    sbom = push_sbom(registry, REPO, other, CYCLONEDX, {})
    # a referrers tag that lists another image's SBOM (copied by hand, or a broken tool)
    mem.tags[(REPO, referrers_tag(digest))] = mem.tags[(REPO, referrers_tag(other_digest))]
    assert find_sbom(registry, REPO, digest) == sbom
    with pytest.raises(AttestationMissing, match="has subject"):
        read_sbom(registry, REPO, digest)


def test_read_sbom_names_what_is_missing(mem: MemoryRegistry, registry: RegistryClient) -> None:
    digest = push_like_buildx(mem, REPO, ["t"], IMAGE)
    with pytest.raises(AttestationMissing, match=re.escape(f"no {CYCLONEDX_TYPE} referrer under tag sha256-")):
        read_sbom(registry, REPO, digest)
    mem.put(REPO, referrers_tag(digest), IMAGE, IMAGE_TYPE)  # the tag holds something that is no index
    with pytest.raises(AttestationMissing, match="not a referrers index"):
        read_sbom(registry, REPO, digest)
