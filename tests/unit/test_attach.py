"""The build's attestation pool: an SBOM is made only when missing; failures are reported per unit."""

from __future__ import annotations

import json
import threading

import pytest

from shipyard.build.attach import Attacher, Pushed
from shipyard.errors import CommandFailed
from shipyard.events import Event
from shipyard.oci.attestations import find_sbom, read_sbom
from shipyard.oci.client import RegistryClient
from tests.attested import CYCLONEDX, IMAGE_TYPE, push_like_buildx
from tests.memregistry import MemoryRegistry

REPO = "acme/cpu/svc"
IMAGE = json.dumps({"schemaVersion": 2, "mediaType": IMAGE_TYPE, "config": {}, "layers": []}).encode()


def pushed(digest: str, key: str = "cpu/svc") -> Pushed:
    return Pushed(key, REPO, f"localhost:5000/{REPO}@{digest}", digest, "linux/amd64")


def test_makes_the_sbom_of_a_new_image_and_keeps_it_for_a_reused_one(
    mem: MemoryRegistry, registry: RegistryClient
) -> None:
    digest = push_like_buildx(mem, REPO, ["t"], IMAGE)
    asked: list[tuple[str, str]] = []
    events: list[Event] = []

    def generate(ref: str, platform: str) -> bytes:
        asked.append((ref, platform))
        return CYCLONEDX

    attacher = Attacher(registry, generate, events.append, jobs=2)
    attacher.submit(pushed(digest))
    done, failed = attacher.wait()
    assert failed == {}
    assert asked == [(f"localhost:5000/{REPO}@{digest}", "linux/amd64")]
    assert done["cpu/svc"]["sbom"] == find_sbom(registry, REPO, digest)
    assert read_sbom(registry, REPO, digest).document == CYCLONEDX
    assert done["cpu/svc"]["provenance"] == json.loads(mem.manifests[(REPO, digest)][0])["manifests"][1]["digest"]
    assert "(2 components)" in events[0].message and events[0].kind == "unit.attested"

    again = Attacher(registry, generate, events.append, jobs=1)  # the next release reuses the image
    again.submit(pushed(digest))
    assert again.wait() == (done, {})
    assert len(asked) == 1, "an image that has its SBOM gets no second one"
    assert "SBOM present" in events[-1].message


def test_failures_are_reported_per_unit_and_do_not_stop_the_others(
    mem: MemoryRegistry, registry: RegistryClient
) -> None:
    good = push_like_buildx(mem, REPO, ["good"], IMAGE)
    bare = push_like_buildx(mem, REPO, ["bare"], IMAGE.replace(b"[]}", b'[], "x": 1}'), predicate=None)
    broken = push_like_buildx(mem, REPO, ["broken"], IMAGE.replace(b"[]}", b'[], "x": 2}'))
    lock = threading.Lock()

    def generate(ref: str, platform: str) -> bytes:
        with lock:
            if ref.endswith(broken):
                raise CommandFailed(["trivy", "image"], 1, "FATAL unable to find the specified image")
            return CYCLONEDX

    attacher = Attacher(registry, generate, lambda _: None, jobs=3)
    for key, digest in (("good", good), ("bare", bare), ("broken", broken)):
        attacher.submit(pushed(digest, key))
    done, failed = attacher.wait()
    assert set(done) == {"good"}
    assert failed["bare"].startswith("bare: attestation failed: no attestation manifest for")
    assert failed["broken"] == (
        "broken: attestation failed: trivy image exited 1: FATAL unable to find the specified image"
    )
    assert find_sbom(registry, REPO, broken) is None


def test_a_bug_is_not_reported_as_a_failed_attestation(mem: MemoryRegistry, registry: RegistryClient) -> None:
    digest = push_like_buildx(mem, REPO, ["t"], IMAGE)

    def generate(ref: str, platform: str) -> bytes:
        raise ZeroDivisionError

    attacher = Attacher(registry, generate, lambda _: None, jobs=1)
    attacher.submit(pushed(digest))
    with pytest.raises(ZeroDivisionError):
        attacher.wait()
