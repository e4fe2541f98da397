"""The build's models (build/models.py) with the fake buildx and the in-memory registry: which models are
pushed, where, under which tag, before any image; what the record pins; what is refused before anything
is pushed; and ``from`` artifacts read back by digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from shipyard.build.options import BuildContext, BuildOptions
from shipyard.build.pipeline import build_release
from shipyard.build.revision import read_revision
from shipyard.config.project import load_project
from shipyard.config.registry import parse_registry
from shipyard.errors import ConfigError, RegistryError
from shipyard.events import Event
from shipyard.oci.client import RegistryClient
from shipyard.oci.modelpack import LocalModel, push_model
from shipyard.record import load_record
from tests.conftest import git, make_project
from tests.memregistry import MemoryRegistry
from tests.unit.test_pipeline import FakeBuildx, registry_handler

SERVICE = "affective-processing-center"
TARGET = parse_registry("localhost:5000/acme")
OPTIONS = BuildOptions(target=TARGET, profiles=["cpu"], attest=False)
FILES = {"weights.safetensors": b"\x01" * 4096, "config.json": b'{"classes": 3}', "tokenizer/vocab.txt": b"a\nb\n"}
MODELS = """
[models.affect-nb]
path = "models/affect-nb"
format = "safetensors"
size_budget_mb = 1

[models.unused]
path = "models/affect-nb"
format = "safetensors"
"""


def write_model(directory: Path, files: dict[str, bytes] = FILES) -> Path:
    for rel, data in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_bytes(data)
    return directory


def project(tmp_path: Path, extra: str = MODELS, needs: str = '["affect-nb"]') -> Path:
    root = make_project(tmp_path / "p", services=(SERVICE,), profiles=("cpu",), commit=False, models=False)
    write_model(root / "models" / "affect-nb")
    catalog = root / "shipyard.toml"
    table = f"[images.{SERVICE}.service]\n"
    catalog.write_text(catalog.read_text().replace(table, f"{table}models = {needs}\n") + extra)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "fixture")
    return root


def context(root: Path, mem: MemoryRegistry, monkeypatch: pytest.MonkeyPatch, *, dry_run: bool = False):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(
        "shipyard.build.contexts.Wheelhouse.prepare", lambda self, lock, py, plat: (root.parent / "w", False)
    )
    runner = FakeBuildx(mem)
    runner.dry_run = dry_run
    body = b'{"mediaType": "application/vnd.oci.image.manifest.v1+json"}'
    base_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    registry = RegistryClient(TARGET, transport=httpx.MockTransport(registry_handler(mem, base_digest)))
    events: list[Event] = []
    ctx = BuildContext(
        project=load_project(root, base_override="local"),
        revision=read_revision(root),
        runner=runner,
        registry=registry,
        cache_dir=root.parent / "cache",
        emit=events.append,
    )
    return ctx, runner, events


def blob_puts(mem: MemoryRegistry) -> int:
    return sum(1 for method, path in mem.requests if method == "PUT" and path.startswith("/upload/"))


def test_the_model_is_pushed_under_the_release_tag_before_any_image_and_pinned_on_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem = MemoryRegistry()
    ctx, runner, events = context(project(tmp_path), mem, monkeypatch)
    record = build_release(ctx, OPTIONS)
    release = ctx.revision.release_tag
    model = record.models["affect-nb"]
    assert set(record.models) == {"affect-nb"}  # "unused" is needed by no built service: not pushed
    assert (model.repository, model.tag, model.format, model.source, model.origin) == (
        "localhost:5000/acme/models/affect-nb",
        release,
        "safetensors",
        "path",
        "models/affect-nb",
    )
    assert [f.path for f in model.files] == sorted(FILES)
    assert model.size == sum(map(len, FILES.values()))
    assert mem.tags[("acme/models/affect-nb", release)] == model.digest
    assert not any(repo == "acme/models/unused" for repo, _ in mem.tags)
    assert record.units[f"cpu/{SERVICE}"].models == {"affect-nb": model.digest}
    assert all(not u.models for key, u in record.units.items() if key != f"cpu/{SERVICE}")
    kinds = [e.kind for e in events]
    assert kinds.index("model.built") < kinds.index("unit.started")  # before the first image
    built = next(e for e in events if e.kind == "model.built")
    assert built.data["uploaded_bytes"] > model.size and not built.data["reused"]
    assert built.message.startswith(f"model affect-nb: pushed localhost:5000/acme/models/affect-nb:{release} ")
    saved = load_record(ctx.project.root / ".shipyard" / "releases" / f"{release}.json")
    assert saved.models == record.models and saved.units[f"cpu/{SERVICE}"].models == {"affect-nb": model.digest}


def test_the_same_files_again_upload_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mem = MemoryRegistry()
    root = project(tmp_path)
    first = build_release(context(root, mem, monkeypatch)[0], OPTIONS)
    before = blob_puts(mem)
    ctx, _, events = context(root, mem, monkeypatch)
    again = build_release(ctx, OPTIONS)
    assert again.models == first.models
    assert blob_puts(mem) == before  # no layer, no config: the manifest was found by its digest
    built = next(e for e in events if e.kind == "model.built")
    assert (built.data["uploaded_bytes"], built.data["reused"]) == (0, True)
    assert "reused (same files)" in built.message and "0 bytes uploaded" in built.message


def test_a_dry_run_says_what_it_would_push_and_sends_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mem = MemoryRegistry()
    ctx, _, events = context(project(tmp_path), mem, monkeypatch, dry_run=True)
    build_release(ctx, OPTIONS)
    assert not any("/models/" in path for _, path in mem.requests)
    planned = [e.message for e in events if e.kind == "model.planned"]
    where = f"localhost:5000/acme/models/affect-nb:{ctx.revision.release_tag}"
    assert planned == [f"model affect-nb: would push 3 files (0.0 MB) as {where}"]


def test_a_model_over_its_budget_stops_the_build_before_anything_is_pushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path)
    (root / "models" / "affect-nb" / "weights.safetensors").write_bytes(b"\x00" * 1_500_000)
    git(root, "commit", "-qam", "bigger")
    mem = MemoryRegistry()
    ctx, runner, _ = context(root, mem, monkeypatch)
    with pytest.raises(ConfigError) as caught:
        build_release(ctx, OPTIONS)
    assert str(caught.value) == (
        "shipyard.toml: models.affect-nb.size_budget_mb: model affect-nb is 1.5 MB (3 files), over its budget of "
        "1 MB; nothing was pushed"
    )
    assert not [r for r in mem.requests if r[0] in ("PUT", "POST")]
    assert not [argv for argv in runner.history if "buildx" in argv]


def trained(mem: MemoryRegistry, tmp_path: Path, repository: str, transport_host: str = "localhost:5000") -> str:
    """A ModelPack artifact another pipeline pushed, its digest."""
    client = RegistryClient(parse_registry(f"{transport_host}/x"), transport=mem.transport())
    directory = write_model(tmp_path / "trained", {"model.gguf": b"\x02" * 2048, "config.json": b"{}"})
    return push_model(client, repository, LocalModel.scan(directory, name="trained", format="gguf")).digest


def from_catalog(reference: str, format: str = "gguf") -> str:
    return f'\n[models.trained]\nfrom = "{reference}"\nformat = "{format}"\n'


def test_a_from_model_in_the_same_registry_is_recorded_by_digest_and_tagged_server_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem = MemoryRegistry()
    digest = trained(mem, tmp_path, "pipeline/trained")
    reference = f"localhost:5000/pipeline/trained@{digest}"
    root = project(tmp_path, from_catalog(reference), needs='["trained"]')
    before = blob_puts(mem)
    ctx, _, events = context(root, mem, monkeypatch)
    record = build_release(ctx, OPTIONS)
    model = record.models["trained"]
    release = ctx.revision.release_tag
    assert (model.digest, model.source, model.origin, model.format) == (digest, "from", reference, "gguf")
    assert (model.repository, model.tag) == ("localhost:5000/acme/models/trained", release)
    assert [f.path for f in model.files] == ["config.json", "model.gguf"] and model.size == 2050
    assert mem.tags[("acme/models/trained", release)] == digest
    assert blob_puts(mem) == before  # nothing uploaded: a manifest PUT of the same bytes
    assert record.units[f"cpu/{SERVICE}"].models == {"trained": digest}
    assert "0 bytes uploaded" in next(e.message for e in events if e.kind == "model.built")


def test_a_from_model_in_another_registry_is_read_there_and_only_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mem, elsewhere = MemoryRegistry(), MemoryRegistry()
    digest = trained(elsewhere, tmp_path, "acme/trained", transport_host="ghcr.io")
    root = project(tmp_path, from_catalog(f"ghcr.io/acme/trained@{digest}"), needs='["trained"]')
    ctx, _, _ = context(root, mem, monkeypatch)
    asked: list[str] = []

    def registry_for(host: str) -> RegistryClient:
        asked.append(host)
        return RegistryClient(parse_registry(f"{host}/x"), transport=elsewhere.transport())

    elsewhere.requests.clear()
    record = build_release(replace(ctx, registry_for=registry_for), OPTIONS)
    model = record.models["trained"]
    assert asked == ["ghcr.io"]
    assert (model.repository, model.tag, model.digest) == ("ghcr.io/acme/trained", "", digest)
    assert not [r for r in elsewhere.requests if r[0] in ("PUT", "POST")]
    assert not any(repo.startswith("acme/models") for repo, _ in mem.tags)


def test_a_from_model_of_another_format_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mem = MemoryRegistry()
    digest = trained(mem, tmp_path, "pipeline/trained")
    root = project(tmp_path, from_catalog(f"localhost:5000/pipeline/trained@{digest}", "onnx"), needs='["trained"]')
    with pytest.raises(ConfigError, match=r"^shipyard.toml: models.trained.format: 'onnx', but .* says its format"):
        build_release(context(root, mem, monkeypatch)[0], OPTIONS)


def test_a_from_that_is_no_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mem = MemoryRegistry()
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}).encode()
    digest = mem.put("pipeline/image", "latest", body, "application/vnd.oci.image.manifest.v1+json")
    root = project(tmp_path, from_catalog(f"localhost:5000/pipeline/image@{digest}"), needs='["trained"]')
    with pytest.raises(RegistryError, match=r"not a ModelPack model"):
        build_release(context(root, mem, monkeypatch)[0], OPTIONS)
    assert not any(repo.startswith("acme/") for repo, _ in mem.tags)


@pytest.mark.parametrize(("status", "mounted"), [(201, True), (202, False)])
def test_a_cross_repository_mount_sends_no_bytes_and_a_refused_one_cancels_its_session(
    status: int, mounted: bool
) -> None:
    sent: list[tuple[str, str]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, str(request.url).removeprefix("http://localhost:5000")))
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            return httpx.Response(status, headers={"Location": "/v2/acme/models/m/blobs/uploads/u1"})
        return httpx.Response(204)

    client = RegistryClient(TARGET, transport=httpx.MockTransport(handle))
    digest = "sha256:" + "a" * 64
    assert client.mount_blob("acme/models/m", digest, "pipeline/m") is mounted
    assert sent[1] == ("POST", f"/v2/acme/models/m/blobs/uploads/?mount={digest.replace(':', '%3A')}&from=pipeline%2Fm")
    assert sent[2:] == ([] if mounted else [("DELETE", "/v2/acme/models/m/blobs/uploads/u1")])


def test_the_plan_lists_the_models_it_would_push(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shipyard.cli.main import main

    root = project(tmp_path)
    assert main(["--project", str(root), "plan", "--registry", "localhost:5000/acme", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    release = read_revision(root).release_tag
    assert data["models"] == [
        {"name": "affect-nb", "ref": f"localhost:5000/acme/models/affect-nb:{release}", "source": "path", "from": None}
    ]
    assert main(["--project", str(root), "plan", "--registry", "localhost:5000/acme", "--image", "family-web"]) == 0
    assert "models/" not in capsys.readouterr().out  # no built service needs it
