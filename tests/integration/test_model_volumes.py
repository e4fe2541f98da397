"""Model volumes on the real engine: filled by the one-shot container from the real registry, by digest.

Each test pushes a model of its own (``shipyard-it/models/<uuid>``), fills a volume of its own and removes
it after. What a service would read is read back through a container, not taken from shipyard's word.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from shipyard.config.keys import state_dir
from shipyard.errors import EngineError
from shipyard.events import Event
from shipyard.oci.client import RegistryClient
from shipyard.oci.modelpack import push_model
from shipyard.oci.reference import RegistryTarget
from shipyard.release.model_volumes import PlacedModel, ensure_models, model_fetch_image
from shipyard.runner import Runner

FILES = {"weights/model.safetensors": os.urandom(1 << 20), "config.json": b'{"labels": ["low", "high"]}'}


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def fetch_image(registry: RegistryClient) -> str:
    return model_fetch_image(registry, Runner(), lambda event: None)


@pytest.fixture
def volumes(engine: docker.DockerClient) -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        for volume in engine.volumes.list(filters={"name": name}):
            volume.remove(force=True)


def pushed(registry: RegistryClient, it_target: RegistryTarget, tmp_path: Path, name: str) -> PlacedModel:
    for path, data in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    repository = it_target.repository("models", uuid.uuid4().hex)
    model = push_model(registry, repository, tmp_path, name=name, format="safetensors")
    return PlacedModel(name, f"{it_target.host}/{repository}@{model.digest}", f"/models/{name}")


def read_back(image: str, volume: str, path: str) -> bytes:
    argv = ["docker", "run", "--rm", "--read-only", "--entrypoint", "cat", "-v", f"{volume}:/m:ro", image, f"/m/{path}"]
    return subprocess.run(argv, check=True, capture_output=True).stdout


def test_a_model_fills_its_volume_by_digest_and_a_second_fill_downloads_nothing(
    registry: RegistryClient, it_target: RegistryTarget, tmp_path: Path, engine, fetch_image, volumes
) -> None:
    model = pushed(registry, it_target, tmp_path, "tiny")
    volumes.append(model.volume)
    events: list[Event] = []
    first = ensure_models(engine, [model], fetch_image, events.append, "it")
    assert [(r["state"], r["files"], r["bytes"]) for r in first] == [("filled", 2, sum(map(len, FILES.values())))]
    for path, data in FILES.items():
        assert read_back(fetch_image, model.volume, path) == data
    labels = engine.volumes.get(model.volume).attrs["Labels"]
    assert labels["io.shipyard.model.digest"] == model.digest
    again = ensure_models(engine, [model], fetch_image, events.append, "it")
    assert [(r["state"], r["bytes"]) for r in again] == [("present", 0)]
    assert any("nothing downloaded" in e.message for e in events)


def test_a_blob_changed_in_the_registry_fails_the_fill_naming_the_file(
    registry: RegistryClient, it_target: RegistryTarget, tmp_path: Path, engine, fetch_image, volumes
) -> None:
    model = pushed(registry, it_target, tmp_path, "tampered")
    volumes.append(model.volume)
    layer = registry.manifest(model.ref.split("/", 1)[1].rpartition("@")[0], model.digest)
    assert layer is not None
    weights = next(x for x in layer.json["layers"] if x["annotations"]["org.cncf.model.filepath"].startswith("weights"))
    hexdigest = weights["digest"].removeprefix("sha256:")
    data = state_dir() / "registry" / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    original = data.read_bytes()
    data.write_bytes(bytes(len(original)))  # the same size, other bytes: what a corrupt store serves
    with pytest.raises(EngineError, match=r"model tampered: file weights/model.safetensors: .* not .* bytes of"):
        ensure_models(engine, [model], fetch_image, lambda event: None, "it")
    # nothing usable was left: the marker is only written after the last file checked out
    listing = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "ls", "-v", f"{model.volume}:/m:ro", fetch_image, "-A", "/m"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert ".shipyard-model.json" not in listing
