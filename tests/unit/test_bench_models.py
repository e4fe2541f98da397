"""The models benchmark (bench/models.py) at 4 MiB: its model, its versions, the shipyard side and its report."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import verified_signers
from shipyard.oci.modelfiles import scan_model
from shipyard.oci.modelpack import ARTIFACT_TYPE, inspect_model
from shipyard.oci.signing import SigningKey
from tests.memregistry import MemoryRegistry

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # bench/models.py imports scale_report as its script would
_spec = importlib.util.spec_from_file_location("bench_models", BENCH / "models.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

SIZE = 4 << 20
BLOB = re.compile(r"^/v2/.+/blobs/(?P<digest>sha256:[0-9a-f]{64})$")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    root: Path = bench.make_model(tmp_path / "model", SIZE)
    return root


@pytest.fixture
def registry(mem: MemoryRegistry) -> RegistryClient:
    """A client on ``mem`` whose blob HEADs answer the blob's size, as distribution does (verify checks it)."""

    def handle(request: httpx.Request) -> httpx.Response:
        response = mem.handle(request)
        found = BLOB.match(request.url.path)
        if request.method == "HEAD" and found and response.status_code == 200:
            return httpx.Response(200, headers={"Content-Length": str(len(mem.blobs[found["digest"]]))})
        return response

    return RegistryClient(
        parse_registry("localhost:5000/acme"), transport=httpx.MockTransport(handle), sleep=lambda _: None
    )


def test_the_model_is_a_real_weight_file_and_a_config(model: Path) -> None:
    weights = model / bench.WEIGHTS
    assert weights.stat().st_size == SIZE
    assert weights.stat().st_blocks * 512 >= SIZE  # written, not sparse: the bytes really move
    assert json.loads((model / bench.CONFIG).read_text())
    assert [file.path for file in scan_model(model)] == [bench.CONFIG, bench.WEIGHTS]


def test_each_version_changes_the_weights_digest_and_keeps_its_size(model: Path) -> None:
    digests = {scan_model(model)[1].digest}
    offsets = []
    for version in (1, 2, 3):
        offsets.append(bench.new_version(model, version))
        digests.add(scan_model(model)[1].digest)
    assert len(set(offsets)) == 3 and all(0 <= o <= SIZE - bench.BLOCK for o in offsets)
    assert len(digests) == 4 and (model / bench.WEIGHTS).stat().st_size == SIZE


def test_the_shipyard_side_pushes_verifies_and_signs_a_new_version(
    model: Path, mem: MemoryRegistry, registry: RegistryClient
) -> None:
    key = SigningKey.generate()
    repository = "bench-models-test/shipyard/bench-model"
    first = bench.release_shipyard(registry, repository, model, "v0", key)
    bench.new_version(model, 1)
    second = bench.release_shipyard(registry, repository, model, "v1", key)
    assert first["uploaded"] == [bench.CONFIG, bench.WEIGHTS]
    assert second["uploaded"] == [bench.WEIGHTS]  # the config.json file is the same: not sent again
    assert second["uploaded_bytes"] > SIZE  # the weights and the model config blob
    assert all(second[f"{phase}_s"] >= 0 for phase in ("hash", "upload", "verify", "sign"))
    assert inspect_model(registry, repository, "v1").digest == second["digest"] != first["digest"]
    assert verified_signers(registry, repository, second["digest"], [key.public]) == [key.public.key_id]
    layer_gets = [path for method, path in mem.requests if method == "GET" and "/blobs/sha256:" in path]
    assert any(path.endswith(scan_model(model)[1].digest) for path in layer_gets)  # verify read the bytes back


def test_the_shipyard_side_refuses_a_release_verify_finds_wrong(model: Path, registry: RegistryClient) -> None:
    def corrupt(self: RegistryClient, repository: str, digest: str) -> tuple[str, int]:
        return "sha256:" + "0" * 64, SIZE

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RegistryClient, "blob_hash", corrupt)
        with pytest.raises(SystemExit, match="does not match the bytes the registry serves"):
            bench.release_shipyard(registry, "bench/shipyard/m", model, "v0", SigningKey.generate())


def test_oras_pushes_the_same_files_with_the_same_media_types() -> None:
    argv = bench.oras_argv("ns/oras/bench-model", "v1")
    assert argv[:4] == ["oras", "push", f"{bench.REGISTRY}/ns/oras/bench-model:v1", "--plain-http"]
    assert argv[argv.index("--artifact-type") + 1] == ARTIFACT_TYPE
    assert argv[-2:] == [
        f"{bench.CONFIG}:application/vnd.cncf.model.weight.config.v1.raw",
        f"{bench.WEIGHTS}:application/vnd.cncf.model.weight.v1.raw",
    ]


def raw_figures() -> dict[str, Any]:
    def ship(seconds: float, rss: float) -> dict[str, Any]:
        phases = {"hash_s": 1.0, "upload_s": seconds / 2 - 1.0, "verify_s": seconds / 2 - 0.5, "sign_s": 0.05}
        return {"s": seconds, "rss_mib": rss, "phases": phases}

    return {
        "meta": {
            "measured": "2026-01-01 00:00 UTC",
            "host": "test",
            "cores": 2,
            "memory_gib": 8.0,
            "load": "0.1 0.1 0.1",
            "python": "3.11",
            "oras": "1.2.0",
            "registry": "distribution 2.8",
            "rounds": 3,
            "weight_bytes": 1 << 30,
            "namespace": "bench-models-test",
            "command": "nox -s bench -- --models",
        },
        "floors": {"shipyard imports": {"s": 0.3, "rss_mib": 40.0}, "oras version": {"s": 0.01, "rss_mib": 20.0}},
        "rounds": [
            {"order": ["shipyard", "oras"], "shipyard": ship(8.0, 50.0), "oras": {"s": 4.0, "rss_mib": 40.0}},
            {"order": ["oras", "shipyard"], "shipyard": ship(6.0, 60.0), "oras": {"s": 3.0, "rss_mib": 30.0}},
            {"order": ["shipyard", "oras"], "shipyard": ship(7.0, 55.0), "oras": {"s": 5.0, "rss_mib": 35.0}},
        ],
    }


def test_the_report_gives_min_median_peak_memory_and_ratios_to_oras(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n<!-- bench:deploy:begin -->\nkept\n<!-- bench:deploy:end -->\n")
    lines = bench.write_results(raw_figures(), results)
    release = next(line for line in lines if "release:" in line)
    oras = next(line for line in lines if "`oras push`" in line and line.startswith("| oras"))
    assert "| 6.00 | 7.00 |" in release and "| 60 |" in release and "**1.75×**" in release  # 7 s over oras's 4 s
    assert "| 3.00 | 4.00 |" in oras and "| 40 |" in oras and "**1.00×**" in oras
    assert any("Peak RSS, shipyard over oras: **1.50×**" in line for line in lines)  # 60 MiB over 40 MiB
    text = results.read_text()
    assert "kept" in text and "<!-- bench:models:begin -->" in text and "## Models: releasing" in text
    assert json.loads(text.split("```json\n", 1)[1].split("```", 1)[0])["meta"]["rounds"] == 3
