"""Model volumes on the real engine: filled by the one-shot container from the real registry, by digest.

Each test pushes a model of its own (``shipyard-it/models/<uuid>``), fills a volume of its own and removes
it after. What a service would read is read back through a container, not taken from shipyard's word.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from shipyard.config.keys import machine_state_dir
from shipyard.errors import EngineError
from shipyard.events import Event
from shipyard.oci.client import RegistryClient
from shipyard.oci.modelpack import LocalModel, push_model, verify_model
from shipyard.oci.reference import RegistryNamespace
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


def pushed(registry: RegistryClient, it_target: RegistryNamespace, tmp_path: Path, name: str) -> PlacedModel:
    for path, data in FILES.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    repository = it_target.repository("models", uuid.uuid4().hex)
    model = push_model(registry, repository, LocalModel.scan(tmp_path, name=name, format="safetensors"))
    return PlacedModel(name, f"{it_target.host}/{repository}@{model.digest}", f"/models/{name}")


def read_back(image: str, volume: str, path: str) -> bytes:
    argv = ["docker", "run", "--rm", "--read-only", "--entrypoint", "cat", "-v", f"{volume}:/m:ro", image, f"/m/{path}"]
    return subprocess.run(argv, check=True, capture_output=True).stdout


def test_a_model_fills_its_volume_by_digest_and_a_second_fill_downloads_nothing(
    registry: RegistryClient, it_target: RegistryNamespace, tmp_path: Path, engine, fetch_image, volumes
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
    registry: RegistryClient, it_target: RegistryNamespace, tmp_path: Path, engine, fetch_image, volumes
) -> None:
    model = pushed(registry, it_target, tmp_path, "tampered")
    volumes.append(model.volume)
    layer = registry.manifest(model.ref.split("/", 1)[1].rpartition("@")[0], model.digest)
    assert layer is not None
    weights = next(x for x in layer.json["layers"] if x["annotations"]["org.cncf.model.filepath"].startswith("weights"))
    hexdigest = weights["digest"].removeprefix("sha256:")
    data = machine_state_dir() / "registry" / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
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


def handmade(registry: RegistryClient, repository: str, tmp_path: Path) -> tuple[str, dict[str, bytes]]:
    """A ModelPack artifact written by hand, as another tool (modctl, KitOps) writes one following the
    spec: a tar layer for a directory, a raw weight layer, extra annotations and config keys; its digest
    and the files it holds."""
    vocab, weights = b"happy\ngrateful\n", os.urandom(1 << 16)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "vocab.txt").write_bytes(vocab)
    with tarfile.open(tmp_path / "tokenizer.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(tmp_path / "tokenizer", arcname="tokenizer")
    archive = (tmp_path / "tokenizer.tar").read_bytes()
    layers = []
    for blob, media_type, path in (
        (archive, "application/vnd.cncf.model.weight.config.v1.tar", "tokenizer"),
        (weights, "application/vnd.cncf.model.weight.v1.raw", "model.gguf"),
    ):
        digest = registry.upload_blob(repository, blob)
        annotations = {"org.cncf.model.filepath": path, "org.cncf.model.file.metadata+json": json.dumps({"name": path})}
        layers.append({"mediaType": media_type, "digest": digest, "size": len(blob), "annotations": annotations})
    config = json.dumps({
        "descriptor": {"name": "handmade", "family": "tiny", "createdAt": "2025-01-01T00:00:00Z"},
        "config": {"format": "gguf", "paramSize": "16K"},
        "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in layers]},
    }).encode()  # fmt: skip
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.cncf.model.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.model.config.v1+json",
                   "digest": registry.upload_blob(repository, config), "size": len(config)},
        "layers": layers, "annotations": {"org.cncf.model.created": "2025-01-01T00:00:00Z"},
    }).encode()  # fmt: skip
    digest = registry.put_manifest(repository, "handmade", manifest, "application/vnd.oci.image.manifest.v1+json")
    return digest, {"tokenizer/vocab.txt": vocab, "model.gguf": weights}


def test_a_model_another_tool_wrote_fills_its_volume_tar_layers_and_all(
    registry: RegistryClient, it_target: RegistryNamespace, tmp_path: Path, engine, fetch_image, volumes
) -> None:
    repository = it_target.repository("pipeline", uuid.uuid4().hex)
    digest, files = handmade(registry, repository, tmp_path)
    assert verify_model(registry, repository, digest, deep=True) == []
    model = PlacedModel("handmade", f"{it_target.host}/{repository}@{digest}", "/models/handmade")
    volumes.append(model.volume)
    [result] = ensure_models(engine, [model], fetch_image, lambda event: None, "it")
    assert (result["state"], result["files"]) == ("filled", 2)
    for path, data in files.items():
        assert read_back(fetch_image, model.volume, path) == data
