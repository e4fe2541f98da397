from __future__ import annotations

import json
import math
import signal
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from affective_processing_center import SERVICE_NAME
from affective_processing_center.app import InvalidInput, app, parse_text
from affective_processing_center.classifier import tokenize, train, train_default
from affective_processing_center.corpus import CORPUS
from starlette.testclient import TestClient

SERVICE_DIR = Path(__file__).resolve().parents[1]
GOLDEN = {"text": "I am so happy and grateful, this is wonderful news"}
LABELS = {"joy", "anger", "sadness", "neutral"}


@pytest.fixture()
def client(clean_env: None) -> TestClient:
    return TestClient(app)


# --- pure classifier --------------------------------------------------------------------------

def test_tokenizer() -> None:
    assert tokenize("I DON'T like it... Really?! 42 times") == ["i", "don't", "like", "it", "really", "times"]
    assert tokenize("  !!! ") == []


def test_corpus_shape_and_training_accuracy() -> None:
    assert set(CORPUS) == LABELS
    assert all(15 <= len(sentences) <= 25 for sentences in CORPUS.values())
    model = train_default()
    pairs = [(s, lab) for lab, sentences in CORPUS.items() for s in sentences]
    accuracy = sum(model.classify(s)[0] == lab for s, lab in pairs) / len(pairs)
    assert accuracy >= 0.9


@pytest.mark.parametrize(("text", "expected"), [
    ("I am so happy and grateful, this is wonderful news", "joy"),
    ("What a lovely day, I feel great", "joy"),
    ("I am furious, this is unacceptable", "anger"),
    ("I hate this, you ruined everything", "anger"),
    ("She cried all night, lonely and heartbroken", "sadness"),
    ("I miss my friend who passed away", "sadness"),
    ("The meeting moved to the second floor at nine", "neutral"),
    ("The invoice is attached to the email", "neutral"),
])
def test_clear_examples(text: str, expected: str) -> None:
    label, scores, _ = train_default().classify(text)
    assert label == expected, scores
    assert math.isclose(sum(scores.values()), 1.0, rel_tol=1e-12)


def test_laplace_smoothing_and_unknown_words() -> None:
    model = train({"a": ["red red red"], "b": ["blue"]}, alpha=1.0)
    # P(red|a) = (3+1)/(3+2), P(red|b) = (0+1)/(1+2): smoothing keeps unseen words finite.
    assert math.isclose(math.exp(model.log_likelihood["a"]["red"]), 4 / 5)
    assert math.isclose(math.exp(model.log_likelihood["b"]["red"]), 1 / 3)
    assert model.scores(["zzz"]) == {"a": 0.5, "b": 0.5}  # unknown words carry no evidence
    assert train_default().classify("xyzzy qwerty")[0] == "neutral"  # uniform posterior -> neutral


@pytest.mark.parametrize("body", [b"{", b"[]", b"{}", b'{"text": 5}', b'{"text": ""}', b'{"text": "  \\n "}',
                                  b'{"text": "?!"}', json.dumps({"text": "a" * 10_001}).encode()])
def test_parse_text_rejects(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_text(body)


# --- HTTP layer -------------------------------------------------------------------------------

def test_health(client: TestClient, runtime_env: Callable[..., None]) -> None:
    assert client.get("/health").json() == {
        "status": "ok", "service": SERVICE_NAME, "profile": "unknown", "accelerator": "none",
        "cuda_arch": None, "workers": 1, "omp_num_threads": None,
    }
    runtime_env({"SHIPYARD_PROFILE": "cpu-small", "SHIPYARD_HARDWARE_GPU": "nvidia-a10g", "TORCH_CUDA_ARCH_LIST": "8.6",
                 "OMP_NUM_THREADS": "1", "UVICORN_WORKERS": "2"}, cpu_count=16)
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok", "service": SERVICE_NAME, "profile": "cpu-small", "accelerator": "nvidia-a10g",
        "cuda_arch": "8.6", "workers": 2, "omp_num_threads": "1",
    }


def test_affect_golden(client: TestClient) -> None:
    response = client.post("/v1/affect", json=GOLDEN)
    assert response.status_code == 200
    body = response.json()
    assert body["label"] == "joy"
    assert body["tokens"] == 10
    assert set(body["scores"]) == LABELS
    assert body["scores"]["joy"] > 0.9
    assert all(round(v, 4) == v for v in body["scores"].values())


@pytest.mark.parametrize("content", [b"", b"nope", b'{"text": ""}', b'{"txt": "hello"}', b'{"text": null}'])
def test_affect_invalid_is_422(client: TestClient, content: bytes) -> None:
    response = client.post("/v1/affect", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert isinstance(response.json()["error"], str)


# --- the real entry point ---------------------------------------------------------------------

def test_main_serves_and_stops_on_sigterm(start_service: Callable[..., Any],
                                         post_json: Callable[[str, Any], Any]) -> None:
    # With one worker, uvicorn logs this once it is listening.
    service = start_service("affective_processing_center", SERVICE_DIR,
                            r"Uvicorn running on http://0\.0\.0\.0:(\d+)", env={"UVICORN_WORKERS": "1"})
    with urllib.request.urlopen(f"{service.url}/health", timeout=5) as resp:
        assert json.loads(resp.read())["service"] == SERVICE_NAME
    assert post_json(f"{service.url}/v1/affect", GOLDEN)["label"] == "joy"
    assert 'Finished server process' in service.stop(signal.SIGTERM)
    assert service.proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after shutting down
