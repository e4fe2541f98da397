"""ModelPack artifacts against the real local registry (distribution) and the real oras binary.

Each test pushes to a repository of its own under ``localhost:5000/shipyard-it/models/<uuid>``. What is
sent is counted on the wire (a transport that sees every request), not taken from shipyard's word.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest

from shipyard.oci.artifacts import MANIFEST_TYPE
from shipyard.oci.client import RegistryClient
from shipyard.oci.modelpack import FILEPATH, LocalModel, inspect_model, push_model, verify_model
from shipyard.oci.reference import RegistryNamespace
from tests.integration.conftest import registry_digest
from tests.memregistry import digest_of

WEIGHTS = "weights/model.safetensors"


class Counting(httpx.HTTPTransport):
    """The real transport, recording (method, path, body length) of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path, int(request.headers.get("Content-Length", "0"))))
        return super().handle_request(request)

    def uploads(self) -> list[int]:
        """The body length of every blob upload PUT since the last call."""
        found = [size for method, path, size in self.sent if method == "PUT" and "/blobs/uploads/" in path]
        self.sent.clear()
        return found


@pytest.fixture
def repository(it_target: RegistryNamespace) -> str:
    return it_target.repository("models", uuid.uuid4().hex)


def model_dir(root: Path) -> Path:
    files = {
        WEIGHTS: os.urandom(3 << 20),
        "config.json": b'{"architectures": ["Tiny"], "hidden_size": 8}',
        "tokenizer/tokenizer.json": b'{"model": {"vocab": {"a": 0}}}',
        "tokenizer/tokenizer.model": os.urandom(4096),
        "README.md": b"# tiny\n",
        "added_tokens.json": b"",
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def test_a_second_push_uploads_nothing_and_a_changed_file_only_its_layer(
    tmp_path: Path, it_target: RegistryNamespace, repository: str
) -> None:
    root = model_dir(tmp_path / "tiny")
    wire = Counting()
    with RegistryClient(it_target, transport=wire) as registry:
        first = push_model(registry, repository, LocalModel.scan(root, name="tiny", format="safetensors"), tag="v1")
        manifest = registry.manifest(repository, first.digest)
        assert manifest is not None
        config_size = manifest.json["config"]["size"]
        assert sorted(wire.uploads()) == sorted([config_size, *(file.size for file in first.files)])
        assert first.uploaded_bytes == sum(file.size for file in first.files) + config_size

        again = push_model(registry, repository, LocalModel.scan(root, name="tiny", format="safetensors"), tag="v1")
        assert (again.digest, again.uploaded_bytes, again.uploaded) == (first.digest, 0, ())
        assert [method for method, _, _ in wire.sent if method not in ("HEAD", "GET")] == ["PUT"]  # the manifest
        assert wire.uploads() == []

        (root / WEIGHTS).write_bytes(os.urandom(3 << 20))
        changed = push_model(registry, repository, LocalModel.scan(root, name="tiny", format="safetensors"), tag="v1")
        sent = wire.uploads()
        assert changed.digest != first.digest and changed.uploaded == (WEIGHTS,)
        assert len(sent) == 2 and sent[0] == 3 << 20 and changed.uploaded_bytes == sum(sent)  # weights, config
        assert registry_digest(f"{it_target.host}/{repository}", "v1") == changed.digest
        assert verify_model(registry, repository, "v1", deep=True) == []
        assert verify_model(registry, repository, first.digest, deep=True) == []


PUSH_AND_MEASURE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from shipyard.config.registry import parse_registry
    from shipyard.oci.client import RegistryClient
    from shipyard.oci.modelpack import LocalModel, push_model

    def hwm_kib():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])

    registry = RegistryClient(parse_registry("localhost:5000/shipyard-it"))
    registry.ping()
    before = hwm_kib()
    pushed = push_model(registry, sys.argv[1], LocalModel.scan(Path(sys.argv[2]), name="big", format="pt"))
    print(json.dumps({"before_kib": before, "after_kib": hwm_kib(), "digest": pushed.digest,
                      "uploaded_bytes": pushed.uploaded_bytes}))
    """
)


def test_a_1_gib_weight_file_is_pushed_with_under_200_mb_of_memory(
    tmp_path: Path, registry: RegistryClient, repository: str
) -> None:
    """In a process of its own, so that its peak RSS (VmHWM) is the push's and nothing else's."""
    with (tmp_path / "model.bin").open("wb") as out:
        out.write(b"shipyard 1 GiB sparse weights\n")
        out.truncate(1 << 30)
    result = subprocess.run(
        [sys.executable, "-c", PUSH_AND_MEASURE, repository, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout)
    growth_mb = (measured["after_kib"] - measured["before_kib"]) * 1024 / 1e6
    print(f"1 GiB push: VmHWM {measured['before_kib']} KiB -> {measured['after_kib']} KiB (+{growth_mb:.1f} MB)")
    assert growth_mb < 200, measured
    assert measured["uploaded_bytes"] > 1 << 30
    model = inspect_model(registry, repository, measured["digest"])
    assert [(file.path, file.size) for file in model.files] == [("model.bin", 1 << 30)]
    assert registry.blob_size(repository, model.files[0].digest) == 1 << 30


def test_oras_pull_writes_every_file_at_its_path_with_the_same_bytes(
    tmp_path: Path, it_target: RegistryNamespace, registry: RegistryClient, repository: str
) -> None:
    oras = shutil.which("oras")
    if oras is None:
        pytest.skip("oras is not on PATH (Debian: apt-get install oras/trixie)")
    root = model_dir(tmp_path / "tiny")
    pushed = push_model(registry, repository, LocalModel.scan(root, name="tiny", format="safetensors"))
    out = tmp_path / "pulled"
    ref = f"{it_target.host}/{repository}@{pushed.digest}"
    result = subprocess.run([oras, "pull", ref, "-o", str(out), "--plain-http"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    pulled = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert pulled == [file.path for file in pushed.files]
    for path in pulled:
        assert (out / path).read_bytes() == (root / path).read_bytes(), path


def test_a_tag_moved_to_a_manifest_with_another_blob_is_named_by_verify(
    tmp_path: Path, registry: RegistryClient, repository: str
) -> None:
    """The registry refuses nothing here: distribution stores a manifest whose layer is another blob of
    the same size, or whose size is wrong. verify by the tag says which file; by the pinned digest, nothing."""
    root = model_dir(tmp_path / "tiny")
    pushed = push_model(registry, repository, LocalModel.scan(root, name="tiny", format="safetensors"), tag="v1")
    original = registry.manifest(repository, pushed.digest)
    assert original is not None
    impostor = os.urandom(3 << 20)
    (tmp_path / "impostor").write_bytes(impostor)
    registry.upload_file(repository, tmp_path / "impostor", digest_of(impostor), len(impostor))

    def republish(field: str, value: object) -> str:
        document = original.json
        next(entry for entry in document["layers"] if entry["annotations"][FILEPATH] == WEIGHTS)[field] = value
        return registry.put_manifest(repository, "v1", json.dumps(document).encode(), MANIFEST_TYPE)

    republish("digest", digest_of(impostor))
    weights = next(file for file in pushed.files if file.path == WEIGHTS)
    assert verify_model(registry, repository, "v1") == [
        f"{WEIGHTS}: digest {digest_of(impostor)} does not match the config's diffId {weights.digest}"
    ]
    republish("size", weights.size - 1)
    assert verify_model(registry, repository, "v1") == [
        f"{WEIGHTS}: size {weights.size - 1} does not match the registry's {weights.size} bytes for {weights.digest}"
    ]
    assert verify_model(registry, repository, pushed.digest, deep=True) == []
