from __future__ import annotations

import json
import math
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_ops_coordinator import SERVICE_NAME
from model_ops_coordinator.app import InvalidInput, app, parse_features
from model_ops_coordinator.model import LABELS, train_default, training_arrays
from model_ops_coordinator.runtime import effective_workers
from starlette.testclient import TestClient

SERVICE_DIR = Path(__file__).resolve().parents[1]
GOLDEN = {"features": [0.9, 0.88, 0.82, 0.86]}


@pytest.fixture()
def client(clean_env: None) -> TestClient:
    return TestClient(app)


# --- pure model -------------------------------------------------------------------------------

def test_training_accuracy_is_high() -> None:
    x, y = training_arrays()
    assert len(y) == 45 and set(y) == set(LABELS)
    assert train_default().accuracy(x, y) >= 0.9


def test_held_out_points() -> None:
    model = train_default()
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


def test_probabilities_sum_to_one_and_training_is_deterministic() -> None:
    a, b = train_default(), train_default()
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.bias, b.bias)
    _, proba = a.predict([0.3, 0.3, 0.2, 0.2])
    assert list(proba) == list(LABELS)
    assert math.isclose(sum(proba.values()), 1.0, rel_tol=1e-12)


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2, 3, 4]", b'{"x": [1, 2, 3, 4]}', b'{"features": "1,2,3,4"}',
    b'{"features": [1, 2, 3]}', b'{"features": [1, 2, 3, 4, 5]}', b'{"features": [1, 2, "3", 4]}',
    b'{"features": [1, 2, true, 4]}', b'{"features": [1, 2, null, 4]}', b'{"features": [1, 2, NaN, 4]}',
])
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
        "status": "ok", "service": SERVICE_NAME, "profile": "unknown", "accelerator": "none",
        "cuda_arch": None, "workers": 1, "omp_num_threads": None,
    }


def test_health_reflects_env(client: TestClient, runtime_env: Callable[..., None]) -> None:
    runtime_env({"SHIPYARD_PROFILE": "gpu-prod", "SHIPYARD_HARDWARE_GPU": "nvidia-l4", "TORCH_CUDA_ARCH_LIST": "8.9",
                 "OMP_NUM_THREADS": "2", "UVICORN_WORKERS": "1000000"}, cpu_count=3)
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
    response = client.post("/v1/predict", json=GOLDEN)
    assert response.status_code == 200
    body = response.json()
    assert body["label"] == "high"
    assert body["model"] == "load-softmax-1.0.0"
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

def test_main_serves_and_stops_on_sigterm(start_service: Callable[..., Any],
                                         post_json: Callable[[str, Any], Any]) -> None:
    # One worker logs this once it is listening (with several, the parent logs it before any worker
    # accepts connections, so it would not mean ready).
    service = start_service("model_ops_coordinator", SERVICE_DIR, r"Uvicorn running on http://0\.0\.0\.0:(\d+)",
                            env={"UVICORN_WORKERS": "1"})
    with urllib.request.urlopen(f"{service.url}/health", timeout=5) as resp:
        health = json.loads(resp.read())
    assert health["service"] == SERVICE_NAME
    assert health["workers"] == 1
    assert post_json(f"{service.url}/v1/predict", GOLDEN)["label"] == "high"
    assert 'Finished server process' in service.stop(signal.SIGTERM)
    assert service.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after shutting down
