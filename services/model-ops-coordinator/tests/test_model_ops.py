"""model-ops-coordinator: its model trained reproducibly, loaded from models/ops-softmax, served; refused without it."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_ops_coordinator import MODEL_NAME, SERVICE_NAME, train
from model_ops_coordinator.app import InvalidInput, create_app, parse_features
from model_ops_coordinator.model import MODEL_FILES, ModelError, SoftmaxClassifier, load_model
from model_ops_coordinator.runtime import effective_workers, model_dir
from starlette.testclient import TestClient

SERVICE_DIR = Path(__file__).resolve().parents[1]
REPO = SERVICE_DIR.parents[1]
MODELS = REPO / "models"  # laid out as a deploy mounts them: models/<name>/…
MODEL_DIR = MODELS / MODEL_NAME
CATALOG = tomllib.loads((REPO / "shipyard.toml").read_text())
GOLDEN = CATALOG["images"][SERVICE_NAME]["service"]["golden"]
LABELS = train.LABELS


@pytest.fixture(scope="module")
def model() -> SoftmaxClassifier:
    return load_model(MODEL_DIR)


@pytest.fixture()
def client(clean_env: None, model: SoftmaxClassifier) -> TestClient:
    return TestClient(create_app(model))


def training_arrays() -> tuple[np.ndarray, list[str]]:
    x = np.array([row for row, _ in train.TRAINING_DATA], dtype=np.float64)
    return x, [label for _, label in train.TRAINING_DATA]


# --- the model directory: trained reproducibly, named as the catalog names it -----------------------


def test_training_reproduces_the_committed_model_byte_for_byte(tmp_path: Path) -> None:
    # The training step as `nox -s train` runs it, with numpy made unimportable: it needs the stdlib only.
    code = (
        "import runpy, sys; sys.modules['numpy'] = None; runpy.run_module('model_ops_coordinator.train', "
        "run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": str(SERVICE_DIR), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, "--out", str(tmp_path / MODEL_NAME)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written = sorted(p.name for p in (tmp_path / MODEL_NAME).iterdir())
    assert written == sorted(p.name for p in MODEL_DIR.iterdir()) == sorted(MODEL_FILES)
    for name in written:
        assert (tmp_path / MODEL_NAME / name).read_bytes() == (MODEL_DIR / name).read_bytes(), (
            f"models/{MODEL_NAME}/{name} is not what training gives: run `nox -s train` and commit it"
        )
    assert train.main(["--check", "--out", str(MODEL_DIR)]) == 0


def test_check_names_the_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train.write_files(tmp_path, train.model_files())
    (tmp_path / "config.json").write_text("{}")
    assert train.main(["--check", "--out", str(tmp_path)]) == 1
    assert "config.json differ" in capsys.readouterr().err


def test_the_catalog_ships_this_model_where_the_service_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CATALOG["images"][SERVICE_NAME]["service"]["models"] == [MODEL_NAME]
    assert CATALOG["models"][MODEL_NAME]["path"] == f"models/{MODEL_NAME}"
    assert CATALOG["models"][MODEL_NAME]["format"] == "safetensors"
    monkeypatch.delenv("MODEL_CACHE_DIR", raising=False)
    assert model_dir(MODEL_NAME) == Path("/models/ops-softmax")  # the image's MODEL_CACHE_DIR, by default
    monkeypatch.setenv("MODEL_CACHE_DIR", str(MODELS))
    assert model_dir(MODEL_NAME) == MODEL_DIR


def test_exp_is_within_an_ulp_or_two_of_libm() -> None:
    for x in [0.0, -1e-300, -1e-9, -0.3465, -0.5, -1.0, -7.25, -20.0, -100.0, -700.0, 1.0, 30.0]:
        assert math.isclose(train.exp(x), math.exp(x), rel_tol=5e-16), x
    assert train.exp(-800.0) == 0.0


def test_loaded_weights_match_training(model: SoftmaxClassifier) -> None:
    x, y = training_arrays()
    fitted = train.fit(x.tolist(), y)
    assert model.weights.tolist() == np.array(fitted["weights"][1]).reshape(4, 3).tolist()
    assert model.bias.tolist() == fitted["bias"][1]
    assert model.name == "ops-softmax-1.0.0" and model.labels == LABELS


def test_safetensors_layout(model: SoftmaxClassifier) -> None:
    data = (MODEL_DIR / "weights.safetensors").read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    assert size % 8 == 0 and len(data) == 8 + size + 8 * (3 + 4 + 4 + 12)
    assert header["__metadata__"] == {"model": "ops-softmax", "version": "1.0.0"}
    assert header["weights"] == {"dtype": "F64", "shape": [4, 3], "data_offsets": [88, 184]}


# --- pure model -------------------------------------------------------------------------------


def test_training_accuracy_is_high(model: SoftmaxClassifier) -> None:
    x, y = training_arrays()
    assert len(y) == 45 and set(y) == set(LABELS)
    assert model.accuracy(x, y) >= 0.9


def test_held_out_points(model: SoftmaxClassifier) -> None:
    held_out = {
        "low": [(0.16, 0.23, 0.03, 0.11), (0.07, 0.10, 0.00, 0.05)],
        "medium": [(0.50, 0.50, 0.35, 0.40), (0.54, 0.49, 0.36, 0.44)],
        "high": [(0.90, 0.88, 0.82, 0.86), (0.99, 0.97, 0.95, 0.98)],
    }
    for expected, points in held_out.items():
        for point in points:
            label, proba = model.predict(point)
            assert label == expected, (point, proba)
            assert proba[expected] > 0.8


def test_probabilities_sum_to_one(model: SoftmaxClassifier) -> None:
    _, proba = model.predict([0.3, 0.3, 0.2, 0.2])
    assert list(proba) == list(LABELS)
    assert math.isclose(sum(proba.values()), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2, 3, 4]",
        b'{"x": [1, 2, 3, 4]}',
        b'{"features": "1,2,3,4"}',
        b'{"features": [1, 2, 3]}',
        b'{"features": [1, 2, 3, 4, 5]}',
        b'{"features": [1, 2, "3", 4]}',
        b'{"features": [1, 2, true, 4]}',
        b'{"features": [1, 2, null, 4]}',
        b'{"features": [1, 2, NaN, 4]}',
    ],
)
def test_parse_features_rejects(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_features(body, 4)


def test_parse_features_accepts_ints_and_floats() -> None:
    assert parse_features(b'{"features": [1, 0.5, 0, 2e-1]}', 4) == [1.0, 0.5, 0.0, 0.2]


# --- HTTP layer -------------------------------------------------------------------------------


def test_health_defaults(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "service": SERVICE_NAME,
        "profile": "unknown",
        "accelerator": "none",
        "cuda_arch": None,
        "workers": 1,
        "omp_num_threads": None,
    }


def test_health_reflects_env(client: TestClient, runtime_env: Callable[..., None]) -> None:
    runtime_env(
        {
            "SHIPYARD_PROFILE": "gpu-prod",
            "SHIPYARD_HARDWARE_GPU": "nvidia-l4",
            "TORCH_CUDA_ARCH_LIST": "8.9",
            "OMP_NUM_THREADS": "2",
            "UVICORN_WORKERS": "1000000",
        },
        cpu_count=3,
    )
    body = client.get("/health").json()
    assert body["profile"] == "gpu-prod"
    assert body["accelerator"] == "nvidia-l4"
    assert body["cuda_arch"] == "8.9"
    assert body["omp_num_threads"] == "2"
    assert body["workers"] == 3


@pytest.mark.parametrize(("raw", "expected"), [("2", 2), ("0", 1), ("-4", 1), ("many", 1), ("", 1)])
def test_effective_workers(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    monkeypatch.setenv("UVICORN_WORKERS", raw)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert effective_workers() == expected


def test_predict_golden(client: TestClient) -> None:
    # the catalog's golden request, as the canary sends it, gets the catalog's expected answer
    assert (GOLDEN["method"], GOLDEN["path"], GOLDEN["expect"]) == ("POST", "/v1/predict", {"label": "high"})
    response = client.post("/v1/predict", json=GOLDEN["request"])
    assert response.status_code == 200
    body = response.json()
    assert body.items() >= GOLDEN["expect"].items()
    assert body["model"] == "ops-softmax-1.0.0"
    assert set(body["probabilities"]) == set(LABELS)
    assert body["probabilities"]["high"] > 0.9
    assert math.isclose(sum(body["probabilities"].values()), 1.0, abs_tol=1e-5)


@pytest.mark.parametrize("content", [b"{", b'{"features": [1, 2]}', b'{"features": ["a", 1, 2, 3]}', b""])
def test_predict_invalid_is_422(client: TestClient, content: bytes) -> None:
    response = client.post("/v1/predict", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert isinstance(response.json()["error"], str)


def test_predict_wrong_method(client: TestClient) -> None:
    assert client.get("/v1/predict").status_code == 405


# --- the real entry point (uvicorn with the "pkg.app:app" import string) ------------------------


def test_main_serves_and_stops_on_sigterm(
    start_service: Callable[..., Any], post_json: Callable[[str, Any], Any]
) -> None:
    # One worker logs this once it is listening (with several, the parent logs it before any worker
    # accepts connections, so it would not mean ready).
    service = start_service(
        "model_ops_coordinator",
        SERVICE_DIR,
        r"Uvicorn running on http://0\.0\.0\.0:(\d+)",
        env={"UVICORN_WORKERS": "1", "MODEL_CACHE_DIR": str(MODELS)},
    )
    with urllib.request.urlopen(f"{service.url}/health", timeout=5) as resp:
        health = json.loads(resp.read())
    assert health["service"] == SERVICE_NAME
    assert health["workers"] == 1
    assert post_json(f"{service.url}/v1/predict", GOLDEN["request"])["label"] == "high"
    assert "Finished server process" in service.stop(signal.SIGTERM)
    assert service.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after shutting down


# --- without its model the service refuses to start ---------------------------------------------


def copy_model(tmp_path: Path) -> Path:
    target = tmp_path / MODEL_NAME
    train.write_files(target, {p.name: p.read_bytes() for p in MODEL_DIR.iterdir()})
    return target


def test_no_model_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as caught:
        load_model(tmp_path / MODEL_NAME)
    assert str(caught.value) == (
        f"no model at {tmp_path / MODEL_NAME} (expected weights.safetensors, config.json): "
        "deploy it with its release's models"
    )


def test_incomplete_model(tmp_path: Path) -> None:
    directory = copy_model(tmp_path)
    (directory / "config.json").unlink()
    with pytest.raises(ModelError, match=r"^incomplete model at .* \(missing config\.json of weights\.safetensors"):
        load_model(directory)


def _truncate(directory: Path) -> None:
    (directory / "weights.safetensors").write_bytes((directory / "weights.safetensors").read_bytes()[:-8])


def _nan_bias(directory: Path) -> None:
    data = bytearray((directory / "weights.safetensors").read_bytes())
    size = int.from_bytes(data[:8], "little")
    data[8 + size : 8 + size + 8] = np.float64("nan").tobytes()
    (directory / "weights.safetensors").write_bytes(bytes(data))


def _edit_config(**changes: Any) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, **changes}))

    return edit


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").write_text("{not json"), r"config\.json: not valid JSON"),
        (lambda d: (d / "weights.safetensors").write_bytes(b"\x00" * 4), r"not a safetensors file \(4 bytes\)"),
        (lambda d: (d / "weights.safetensors").write_bytes(b"\xff" * 64), r"not a safetensors file \(header of"),
        (_truncate, r"tensor 'weights': data_offsets \[88, 184\] do not fit shape \[4, 3\]"),
        (_nan_bias, r"tensor 'bias' has values that are not finite"),
        (_edit_config(labels=["low", "high"]), r"tensor 'weights' has shape \[4, 3\], expected \[4, 2\]"),
        (_edit_config(weights="weights.npz"), r"weights 'weights\.npz': this service reads weights\.safetensors"),
        (lambda d: (d / "config.json").write_text("[]"), r"config\.json: expected a JSON object"),
    ],
)
def test_broken_model_is_one_line_naming_the_file(tmp_path: Path, damage: Callable[[Path], None], message: str) -> None:
    directory = copy_model(tmp_path)
    damage(directory)
    with pytest.raises(ModelError, match=message) as caught:
        load_model(directory)
    assert "\n" not in str(caught.value)


def test_the_app_factory_loads_from_the_model_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_CACHE_DIR", str(MODELS))
    assert create_app().state.model.name == "ops-softmax-1.0.0"
    monkeypatch.setenv("MODEL_CACHE_DIR", str(tmp_path))
    with pytest.raises(ModelError, match="no model at"):
        create_app()


def test_main_refuses_to_start_without_its_model(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PORT": "0",
        "PYTHONPATH": str(SERVICE_DIR),
        "PYTHONDONTWRITEBYTECODE": "1",
        "MODEL_CACHE_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "model_ops_coordinator"],
        env=env,
        cwd=SERVICE_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"model-ops-coordinator: no model at {tmp_path}/ops-softmax (expected weights.safetensors, config.json): "
        "deploy it with its release's models\n"
    )
    assert done.stdout == ""  # refused before saying it starts, before uvicorn binds the port
