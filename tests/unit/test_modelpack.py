"""ModelPack artifacts (oci/modelpack.py, oci/modelfiles.py) against the in-memory registry: the manifest
is a function of the files alone, every file is streamed, and what verify finds names the file."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tracemalloc
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.config.registry import parse_registry
from shipyard.errors import ConfigError, RegistryError
from shipyard.oci.artifacts import MANIFEST_TYPE, canonical
from shipyard.oci.client import CHUNK, RegistryClient
from shipyard.oci.modelfiles import media_type_of, scan_model
from shipyard.oci.modelpack import (
    ARTIFACT_TYPE,
    CONFIG_TYPE,
    FILEPATH,
    LocalModel,
    inspect_model,
    model_config,
    model_manifest,
    push_model,
    verify_model,
)
from tests.memregistry import MemoryRegistry, digest_of

REPO = "acme/models/tiny"
BLOB = re.compile(r"^/v2/.+/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
RAW = "application/vnd.cncf.model.{}.v1.raw"
FILES = {
    "weights/model.safetensors": b"\x00weights\x01" * 100,
    "config.json": b'{"hidden_size": 8}',
    "tokenizer.json": b'{"vocab": {}}',
    "README.md": b"# tiny\n",
}


def write(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def manifest_of(directory: Path, name: str = "tiny", format: str = "safetensors") -> bytes:
    files = scan_model(directory)
    return model_manifest(model_config(name, format, files), files)


@pytest.fixture
def client(mem: MemoryRegistry) -> RegistryClient:
    """A client on ``mem`` whose blob HEADs answer the blob's size, as distribution does (the shared
    in-memory registry answers HEAD with an empty body and so ``Content-Length: 0``)."""

    def handle(request: httpx.Request) -> httpx.Response:
        response = mem.handle(request)
        found = BLOB.match(request.url.path)
        if request.method == "HEAD" and found and response.status_code == 200:
            return httpx.Response(200, headers={"Content-Length": str(len(mem.blobs[found["digest"]]))})
        return response

    target = parse_registry("localhost:5000/acme")
    return RegistryClient(target, transport=httpx.MockTransport(handle), sleep=lambda _: None)


def uploads(mem: MemoryRegistry) -> int:
    return sum(1 for method, path in mem.requests if method == "PUT" and path.startswith("/upload/"))


# --- determinism --------------------------------------------------------------------------------------
def test_the_same_files_give_the_same_digest_whatever_their_order_mtimes_or_machine(tmp_path: Path) -> None:
    first = write(tmp_path / "a", FILES)
    second = write(tmp_path / "b", dict(reversed(FILES.items())))
    os.utime(second / "config.json", (1, 1))
    assert manifest_of(first) == manifest_of(second)
    assert b"created" not in manifest_of(first) and b"Time" not in manifest_of(first)


@pytest.mark.parametrize(
    "change",
    [
        {"rename": ("config.json", "config2.json")},
        {"write": ("weights/model.safetensors", b"\x00other\x01" * 100)},
        {"write": ("extra.txt", b"x")},
        {"name": "tiny-2"},
        {"format": "gguf"},
    ],
    ids=["renamed", "changed", "added", "other-name", "other-format"],
)
def test_a_renamed_changed_or_added_file_or_another_name_changes_the_digest(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    before = manifest_of(write(tmp_path / "m", FILES))
    if "rename" in change:
        old, new = change["rename"]
        (tmp_path / "m" / old).rename(tmp_path / "m" / new)
    if "write" in change:
        write(tmp_path / "m", dict([change["write"]]))
    after = manifest_of(tmp_path / "m", change.get("name", "tiny"), change.get("format", "safetensors"))
    assert digest_of(after) != digest_of(before)


# --- what the manifest says ---------------------------------------------------------------------------
def test_one_raw_layer_per_file_sorted_with_its_path_and_the_config_lists_name_format_and_diff_ids(
    tmp_path: Path,
) -> None:
    files = scan_model(write(tmp_path, FILES))
    config = model_config("tiny", "safetensors", files)
    manifest = json.loads(model_manifest(config, files))
    assert manifest["mediaType"] == MANIFEST_TYPE and manifest["artifactType"] == ARTIFACT_TYPE
    assert manifest["config"] == {"mediaType": CONFIG_TYPE, "digest": digest_of(config), "size": len(config)}
    assert [layer["annotations"][FILEPATH] for layer in manifest["layers"]] == sorted(FILES)
    for layer in manifest["layers"]:
        path = layer["annotations"][FILEPATH]
        assert layer["annotations"]["org.opencontainers.image.title"] == path  # what oras names the file by
        assert (layer["digest"], layer["size"]) == (digest_of(FILES[path]), len(FILES[path]))
    kinds = {layer["annotations"][FILEPATH]: layer["mediaType"] for layer in manifest["layers"]}
    assert kinds == {
        "README.md": RAW.format("doc"),
        "config.json": RAW.format("weight.config"),
        "tokenizer.json": RAW.format("weight.config"),
        "weights/model.safetensors": RAW.format("weight"),
    }
    assert json.loads(config) == {
        "descriptor": {"name": "tiny"},
        "config": {"format": "safetensors"},
        "modelfs": {"type": "layers", "diffIds": [layer["digest"] for layer in manifest["layers"]]},
    }
    assert canonical(json.loads(config)) == config


@pytest.mark.parametrize(
    ("path", "kind", "guessed"),
    [
        ("model-00001-of-00002.safetensors", "weight", False),
        ("pytorch_model.bin", "weight", False),
        ("gguf/model.Q4_K_M.gguf", "weight", False),
        ("tokenizer.model", "weight.config", False),
        ("merges.txt", "weight.config", False),
        ("generation_config.json", "weight.config", False),
        ("LICENSE", "doc", False),
        ("LICENSE.txt", "doc", False),
        ("docs/card.md", "doc", False),
        ("modeling_tiny.py", "code", False),
        ("eval/golden.jsonl", "dataset", False),
        ("blob.weird", "weight", True),
    ],
)
def test_each_file_gets_the_raw_media_type_of_its_kind(path: str, kind: str, guessed: bool) -> None:
    assert media_type_of(path) == (RAW.format(kind), guessed)


def test_a_guessed_kind_is_marked_untested(tmp_path: Path) -> None:
    files = scan_model(write(tmp_path, {"blob.weird": b"?", "config.json": b"{}"}))
    layers = json.loads(model_manifest(model_config("x", "", files), files))["layers"]
    assert [layer["annotations"].get("org.cncf.model.file.mediatype.untested") for layer in layers] == ["true", None]


def test_hidden_files_are_left_out_and_an_empty_or_missing_directory_is_refused(tmp_path: Path) -> None:
    root = write(tmp_path / "m", {**FILES, ".gitattributes": b"*", ".cache/huggingface/x.lock": b""})
    assert [file.path for file in scan_model(root)] == sorted(FILES)
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    with pytest.raises(ConfigError, match="empty: no model files in it"):
        scan_model(tmp_path / "empty")
    with pytest.raises(ConfigError, match="nowhere: not a directory of model files"):
        scan_model(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="needs a name"):
        model_config("", "gguf", scan_model(root))


# --- push ---------------------------------------------------------------------------------------------
def test_a_second_push_uploads_nothing_and_a_changed_file_only_its_layer_and_the_config(
    tmp_path: Path, mem: MemoryRegistry, client: RegistryClient
) -> None:
    root = write(tmp_path, FILES)
    first = push_model(client, REPO, LocalModel.scan(root, name="tiny", format="safetensors"), tag="v1")
    assert uploads(mem) == len(FILES) + 1 and first.uploaded == tuple(sorted(FILES))
    assert mem.tags[(REPO, "v1")] == first.digest
    config_size = first.uploaded_bytes - sum(map(len, FILES.values()))
    assert config_size > 0
    again = push_model(client, REPO, LocalModel.scan(root, name="tiny", format="safetensors"), tag="v1")
    assert (again.digest, again.uploaded_bytes, again.uploaded, uploads(mem)) == (first.digest, 0, (), len(FILES) + 1)
    write(root, {"weights/model.safetensors": b"\x00retrained\x01" * 100})
    changed = push_model(client, REPO, LocalModel.scan(root, name="tiny", format="safetensors"))
    assert changed.digest != first.digest and changed.uploaded == ("weights/model.safetensors",)
    assert changed.uploaded_bytes == 1100 + config_size and uploads(mem) == len(FILES) + 3
    assert (REPO, changed.digest) in mem.manifests and mem.tags[(REPO, "v1")] == first.digest  # no tag: by digest


class StreamingRegistry(httpx.BaseTransport):
    """``mem`` for everything but blob uploads, which it hashes as they arrive and never keeps:
    ``chunks`` holds the size of every piece of every upload body."""

    def __init__(self, mem: MemoryRegistry) -> None:
        self.mem = mem
        self.chunks: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and request.url.path.startswith("/upload/"):
            hasher = hashlib.sha256()
            for chunk in request.stream:  # type: ignore[union-attr]
                self.chunks.append(len(chunk))
                hasher.update(chunk)
            assert request.url.params["digest"] == "sha256:" + hasher.hexdigest()
            return httpx.Response(201)
        request.read()
        return self.mem.handle(request)


def test_no_file_is_read_whole_the_upload_streams_in_chunks(
    tmp_path: Path, mem: MemoryRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 24 * CHUNK + 5
    with (tmp_path / "model.bin").open("wb") as out:
        for n in range(25):
            out.write(bytes([n]) * (CHUNK if n < 24 else 5))

    def refuse(self: Path, *args: object, **kwargs: object) -> bytes:
        raise AssertionError(f"{self} read whole")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    monkeypatch.setattr(Path, "read_text", refuse)
    transport = StreamingRegistry(mem)
    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=transport)
    tracemalloc.start()
    try:
        pushed = push_model(client, REPO, LocalModel.scan(tmp_path, name="big", format="pt"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pushed.uploaded_bytes > size and pushed.files[0].size == size
    assert peak < 4 * CHUNK, f"pushing a {size >> 20} MiB file held {peak >> 20} MiB at once"
    weights = transport.chunks[: len(transport.chunks) - 1]  # the config comes last, in one piece
    assert sum(weights) == size and max(weights) <= CHUNK and len(weights) >= 25


def test_an_upload_retried_after_a_5xx_sends_the_whole_file_again(tmp_path: Path, mem: MemoryRegistry) -> None:
    data = os.urandom(3 * CHUNK + 7)
    (tmp_path / "w.bin").write_bytes(data)
    failed: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and request.url.path.startswith("/upload/") and not failed:
            failed.append(len(request.read()))
            return httpx.Response(503)
        return mem.handle(request)

    client = RegistryClient(
        parse_registry("localhost:5000/acme"), transport=httpx.MockTransport(flaky), sleep=lambda _: None
    )
    assert client.upload_file(REPO, tmp_path / "w.bin", digest_of(data), len(data)) is True
    assert failed == [len(data)] and mem.blobs[digest_of(data)] == data and client.retried == 1
    assert client.upload_file(REPO, tmp_path / "w.bin", digest_of(data), len(data)) is False


# --- read back and verify -----------------------------------------------------------------------------
def test_a_pushed_model_reads_back_and_verifies(tmp_path: Path, client: RegistryClient) -> None:
    pushed = push_model(
        client, REPO, LocalModel.scan(write(tmp_path, FILES), name="tiny", format="safetensors"), tag="v1"
    )
    model = inspect_model(client, REPO, pushed.digest)
    assert (model.digest, model.name, model.format, model.files) == (pushed.digest, "tiny", "safetensors", pushed.files)
    assert model.size == sum(map(len, FILES.values())) and model.file("config.json") is not None
    assert verify_model(client, REPO, "v1", deep=True) == []


def other_tool_manifest(mem: MemoryRegistry) -> str:
    """A ModelPack artifact as another packager writes it: a tar and a tar+gzip layer, extra annotations
    on layers and manifest, a fuller config; put straight into ``mem``. Returns its digest."""
    tar, gzipped, card = b"T" * 1536, b"\x1f\x8bgz", b"# card"
    for blob in (tar, gzipped, card):
        mem.blobs[digest_of(blob)] = blob
    config = json.dumps(
        {
            "descriptor": {"name": "xyz-3-8B", "createdAt": "2025-01-01T00:00:00Z", "licenses": ["Apache-2.0"]},
            "config": {"architecture": "transformer", "format": "pt", "paramSize": "8b", "precision": "float16"},
            "modelfs": {"type": "layers", "diffIds": [digest_of(tar), "sha256:" + "ab" * 32, digest_of(card)]},
        },
        indent=2,
    ).encode()
    mem.blobs[digest_of(config)] = config
    meta = json.dumps({"name": "model.pt", "mode": 420, "uid": 0, "gid": 0, "size": 1024, "typeflag": 48})
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(config), "size": len(config)},
        "layers": [
            {
                "mediaType": "application/vnd.cncf.model.weight.v1.tar",
                "digest": digest_of(tar),
                "size": len(tar),
                "annotations": {FILEPATH: "model.pt", "org.cncf.model.file.metadata+json": meta, "x.vendor": "1"},
            },
            {
                "mediaType": "application/vnd.cncf.model.weight.config.v1.tar+gzip",
                "digest": digest_of(gzipped),
                "size": len(gzipped),
                "annotations": {FILEPATH: "tokenizer", "org.cncf.model.file.mediatype.untested": "false"},
            },
            {
                "mediaType": RAW.format("doc"),
                "digest": digest_of(card),
                "size": len(card),
                "annotations": {FILEPATH: "README.md"},
            },
        ],
        "annotations": {"org.opencontainers.image.created": "2025-01-01T00:00:00Z", "org.cncf.model.name": "xyz"},
    }
    return mem.put(REPO, "xyz", json.dumps(manifest, indent=4).encode(), MANIFEST_TYPE)


def test_a_manifest_written_by_another_tool_is_described_and_verifies(
    mem: MemoryRegistry, client: RegistryClient
) -> None:
    digest = other_tool_manifest(mem)
    model = inspect_model(client, REPO, digest)
    assert (model.name, model.format) == ("xyz-3-8B", "pt")
    assert [(f.path, f.size, f.archived) for f in model.files] == [
        ("model.pt", 1536, True),
        ("tokenizer", 4, True),
        ("README.md", 6, False),
    ]
    assert model.files[1].diff_id == "sha256:" + "ab" * 32 and model.files[0].digest == model.files[0].diff_id
    assert verify_model(client, REPO, "xyz", deep=True) == []


def republish(mem: MemoryRegistry, digest: str, change: Any) -> str:
    """The manifest at ``digest``, changed by ``change(document)``, put under tag ``v1``."""
    document = json.loads(mem.manifests[(REPO, digest)][0])
    change(document)
    return mem.put(REPO, "v1", json.dumps(document).encode(), MANIFEST_TYPE)


def layer(document: dict[str, Any], path: str) -> dict[str, Any]:
    return next(entry for entry in document["layers"] if entry["annotations"].get(FILEPATH) == path)


WEIGHTS = "weights/model.safetensors"
SAME_SIZE = bytes(reversed(FILES[WEIGHTS]))  # another blob of the weights' size
HEX = r"sha256:[0-9a-f]{64}"


def swap_weights(d: dict[str, Any]) -> None:
    layer(d, WEIGHTS).update(digest=digest_of(SAME_SIZE))


def shrink_weights(d: dict[str, Any]) -> None:
    layer(d, WEIGHTS).update(size=899)


def unname_readme(d: dict[str, Any]) -> None:
    layer(d, "README.md")["annotations"].pop(FILEPATH)


def retype_readme(d: dict[str, Any]) -> None:
    layer(d, "README.md").update(mediaType="text/markdown")


def escape_readme(d: dict[str, Any]) -> None:
    layer(d, "README.md")["annotations"].update({FILEPATH: "../README.md"})


def unmark_model(d: dict[str, Any]) -> None:
    d.pop("artifactType")


@pytest.mark.parametrize(
    ("change", "problem", "in_manifest"),
    [
        (swap_weights, rf"^{WEIGHTS}: digest {HEX} does not match the config's diffId {HEX}$", True),
        (shrink_weights, rf"^{WEIGHTS}: size 899 does not match the registry's 900 bytes for {HEX}$", False),
        (unname_readme, rf"^README.md \({HEX}\): no org.cncf.model.filepath annotation$", True),
        (retype_readme, r"^README.md: media type text/markdown is not a ModelPack layer type$", True),
        (escape_readme, r"^\.\./README.md: not a relative path inside the model$", True),
        (unmark_model, r"^artifactType None is not application/vnd.cncf.model.manifest.v1\+json$", True),
    ],
    ids=["other-blob", "size", "no-filepath", "media-type", "outside", "not-a-model"],
)
def test_verify_names_the_file_and_what_is_wrong(
    tmp_path: Path, mem: MemoryRegistry, client: RegistryClient, change: Any, problem: str, in_manifest: bool
) -> None:
    """A second manifest pushed under the same tag: verify by the tag finds it, by the pinned digest not;
    inspect refuses what is wrong in the manifest itself (what only the registry can tell, it reads)."""
    mem.blobs[digest_of(SAME_SIZE)] = SAME_SIZE
    pushed = push_model(
        client, REPO, LocalModel.scan(write(tmp_path, FILES), name="tiny", format="safetensors"), tag="v1"
    )
    republish(mem, pushed.digest, change)
    problems = verify_model(client, REPO, "v1")
    assert len(problems) == 1 and re.search(problem, problems[0]), problems
    assert verify_model(client, REPO, pushed.digest) == []
    if in_manifest:
        with pytest.raises(RegistryError, match=r"acme/models/tiny@sha256:\w+: not a ModelPack model: "):
            inspect_model(client, REPO, "v1")
    else:
        assert len(inspect_model(client, REPO, "v1").files) == len(FILES)


def test_a_blob_the_registry_lost_is_named(tmp_path: Path, mem: MemoryRegistry, client: RegistryClient) -> None:
    pushed = push_model(client, REPO, LocalModel.scan(write(tmp_path, FILES), name="tiny", format="safetensors"))
    del mem.blobs[digest_of(FILES["config.json"])]
    assert verify_model(client, REPO, pushed.digest) == [
        f"config.json: blob {digest_of(FILES['config.json'])} is not in the registry"
    ]


def test_deep_verify_finds_bytes_that_do_not_hash_to_their_digest(
    tmp_path: Path, mem: MemoryRegistry, client: RegistryClient
) -> None:
    pushed = push_model(
        client, REPO, LocalModel.scan(write(tmp_path, FILES), name="tiny", format="safetensors"), tag="v1"
    )
    mem.blobs[digest_of(FILES[WEIGHTS])] = SAME_SIZE  # a corrupt store or mirror: same size, other bytes
    assert verify_model(client, REPO, pushed.digest) == []  # HEAD cannot tell
    assert verify_model(client, REPO, pushed.digest, deep=True) == [
        f"{WEIGHTS}: digest {digest_of(FILES[WEIGHTS])} does not match the bytes the registry serves "
        f"({digest_of(SAME_SIZE)})"
    ]


def test_no_such_model_and_an_image_are_named(mem: MemoryRegistry, client: RegistryClient) -> None:
    assert verify_model(client, REPO, "nope") == ["localhost:5000/acme/models/tiny:nope: no such manifest"]
    image = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "x", "digest": "sha256:0", "size": 0},
        "layers": [],
    }
    mem.put(REPO, "img", json.dumps(image).encode(), MANIFEST_TYPE)
    with pytest.raises(RegistryError, match=r"not a ModelPack model: artifactType None is not .* \(and 3 more\)"):
        inspect_model(client, REPO, "img")
