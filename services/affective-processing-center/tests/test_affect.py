"""affective-processing-center: its model trained reproducibly, loaded from models/affect-nb; refused without it."""

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

import pytest
from affective_processing_center import MODEL_NAME, SERVICE_NAME, train
from affective_processing_center.app import InvalidInput, create_app, parse_text
from affective_processing_center.classifier import MODEL_FILES, ModelError, NaiveBayes, load_model, tokenize
from affective_processing_center.corpus import CORPUS
from affective_processing_center.runtime import model_dir
from starlette.testclient import TestClient

SERVICE_DIR = Path(__file__).resolve().parents[1]
REPO = SERVICE_DIR.parents[1]
MODELS = REPO / "models"  # laid out as a deploy mounts them: models/<name>/…
MODEL_DIR = MODELS / MODEL_NAME
CATALOG = tomllib.loads((REPO / "shipyard.toml").read_text())
GOLDEN = CATALOG["images"][SERVICE_NAME]["service"]["golden"]
LABELS = {"joy", "anger", "sadness", "neutral"}


@pytest.fixture(scope="module")
def model() -> NaiveBayes:
    return load_model(MODEL_DIR)


@pytest.fixture()
def client(clean_env: None, model: NaiveBayes) -> TestClient:
    return TestClient(create_app(model))


# --- the model directory: trained reproducibly, named as the catalog names it -----------------------


def test_training_reproduces_the_committed_model_byte_for_byte(tmp_path: Path) -> None:
    # The training step as `nox -s train` runs it: a fresh interpreter, the standard library only.
    env = {**os.environ, "PYTHONPATH": str(SERVICE_DIR), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "affective_processing_center.train", "--out", str(tmp_path / MODEL_NAME)],
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
    (tmp_path / "weights.json").unlink()
    assert train.main(["--check", "--out", str(tmp_path)]) == 1
    assert "weights.json differ" in capsys.readouterr().err


def test_the_catalog_ships_this_model_where_the_service_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CATALOG["images"][SERVICE_NAME]["service"]["models"] == [MODEL_NAME]
    assert CATALOG["models"][MODEL_NAME]["path"] == f"models/{MODEL_NAME}"
    monkeypatch.delenv("MODEL_CACHE_DIR", raising=False)
    assert model_dir(MODEL_NAME) == Path("/models/affect-nb")  # the image's MODEL_CACHE_DIR, by default
    monkeypatch.setenv("MODEL_CACHE_DIR", str(MODELS))
    assert model_dir(MODEL_NAME) == MODEL_DIR


def test_loaded_model_is_the_trained_one(model: NaiveBayes) -> None:
    trained = train.fit({lab: CORPUS[lab] for lab in train.LABELS})
    assert model.labels == trained.labels == ("neutral", "joy", "anger", "sadness")
    assert model.log_prior == trained.log_prior and model.log_likelihood == trained.log_likelihood
    assert model.name == "affect-nb-1.0.0"
    weights = json.loads((MODEL_DIR / "weights.json").read_text())
    assert all(isinstance(n, int) for counts in weights["word_counts"].values() for n in counts.values())


# --- pure classifier --------------------------------------------------------------------------


def test_tokenizer() -> None:
    assert tokenize("I DON'T like it... Really?! 42 times") == ["i", "don't", "like", "it", "really", "times"]
    assert tokenize("  !!! ") == []


def test_corpus_shape_and_training_accuracy(model: NaiveBayes) -> None:
    assert set(CORPUS) == LABELS
    assert all(15 <= len(sentences) <= 25 for sentences in CORPUS.values())
    pairs = [(s, lab) for lab, sentences in CORPUS.items() for s in sentences]
    accuracy = sum(model.classify(s)[0] == lab for s, lab in pairs) / len(pairs)
    assert accuracy >= 0.9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am so happy and grateful, this is wonderful news", "joy"),
        ("What a lovely day, I feel great", "joy"),
        ("I am furious, this is unacceptable", "anger"),
        ("I hate this, you ruined everything", "anger"),
        ("She cried all night, lonely and heartbroken", "sadness"),
        ("I miss my friend who passed away", "sadness"),
        ("The meeting moved to the second floor at nine", "neutral"),
        ("The invoice is attached to the email", "neutral"),
    ],
)
def test_clear_examples(model: NaiveBayes, text: str, expected: str) -> None:
    label, scores, _ = model.classify(text)
    assert label == expected, scores
    assert math.isclose(sum(scores.values()), 1.0, rel_tol=1e-12)


def test_laplace_smoothing_and_unknown_words(model: NaiveBayes) -> None:
    tiny = train.fit({"a": ["red red red"], "b": ["blue"]}, alpha=1.0)
    # P(red|a) = (3+1)/(3+2), P(red|b) = (0+1)/(1+2): smoothing keeps unseen words finite.
    assert math.isclose(math.exp(tiny.log_likelihood["a"]["red"]), 4 / 5)
    assert math.isclose(math.exp(tiny.log_likelihood["b"]["red"]), 1 / 3)
    assert tiny.scores(["zzz"]) == {"a": 0.5, "b": 0.5}  # unknown words carry no evidence
    assert model.classify("xyzzy qwerty")[0] == "neutral"  # uniform posterior -> neutral


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b"{}",
        b'{"text": 5}',
        b'{"text": ""}',
        b'{"text": "  \\n "}',
        b'{"text": "?!"}',
        json.dumps({"text": "a" * 10_001}).encode(),
    ],
)
def test_parse_text_rejects(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_text(body)


# --- HTTP layer -------------------------------------------------------------------------------


def test_health(client: TestClient, runtime_env: Callable[..., None]) -> None:
    assert client.get("/health").json() == {
        "status": "ok",
        "service": SERVICE_NAME,
        "profile": "unknown",
        "accelerator": "none",
        "cuda_arch": None,
        "workers": 1,
        "omp_num_threads": None,
    }
    runtime_env(
        {
            "SHIPYARD_PROFILE": "cpu-small",
            "SHIPYARD_HARDWARE_GPU": "nvidia-a10g",
            "TORCH_CUDA_ARCH_LIST": "8.6",
            "OMP_NUM_THREADS": "1",
            "UVICORN_WORKERS": "2",
        },
        cpu_count=16,
    )
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "service": SERVICE_NAME,
        "profile": "cpu-small",
        "accelerator": "nvidia-a10g",
        "cuda_arch": "8.6",
        "workers": 2,
        "omp_num_threads": "1",
    }


def test_affect_golden(client: TestClient) -> None:
    # the catalog's golden request, as the canary sends it, gets the catalog's expected answer
    assert (GOLDEN["method"], GOLDEN["path"], GOLDEN["expect"]) == ("POST", "/v1/affect", {"label": "joy"})
    response = client.post("/v1/affect", json=GOLDEN["request"])
    assert response.status_code == 200
    body = response.json()
    assert body.items() >= GOLDEN["expect"].items()
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


def test_main_serves_and_stops_on_sigterm(
    start_service: Callable[..., Any], post_json: Callable[[str, Any], Any]
) -> None:
    # With one worker, uvicorn logs this once it is listening.
    service = start_service(
        "affective_processing_center",
        SERVICE_DIR,
        r"Uvicorn running on http://0\.0\.0\.0:(\d+)",
        env={"UVICORN_WORKERS": "1", "MODEL_CACHE_DIR": str(MODELS)},
    )
    with urllib.request.urlopen(f"{service.url}/health", timeout=5) as resp:
        assert json.loads(resp.read())["service"] == SERVICE_NAME
    assert post_json(f"{service.url}/v1/affect", GOLDEN["request"])["label"] == "joy"
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
        f"no model at {tmp_path / MODEL_NAME} (expected weights.json, config.json): deploy it with its release's models"
    )


def test_incomplete_model(tmp_path: Path) -> None:
    directory = copy_model(tmp_path)
    (directory / "weights.json").unlink()
    with pytest.raises(ModelError, match=r"^incomplete model at .* \(missing weights\.json of weights\.json, config"):
        load_model(directory)


def _edit(file: str, **changes: Any) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        data = json.loads((directory / file).read_text())
        (directory / file).write_text(json.dumps({**data, **changes}))

    return edit


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "config.json").write_text("{not json"), r"config\.json: not valid JSON"),
        (lambda d: (d / "weights.json").write_bytes(b"\xff\xfe"), r"weights\.json: not valid JSON"),
        (lambda d: (d / "weights.json").write_text("[]"), r"weights\.json: expected a JSON object"),
        (_edit("config.json", labels=["joy", "anger"]), r"'documents' must have one entry per label of config\.json"),
        (_edit("config.json", alpha=0), r"'alpha' must be a positive number, got 0"),
        (_edit("config.json", tokenizer={"lowercase": False, "pattern": "\\w+"}), r"trained with tokenizer"),
        (_edit("config.json", weights="weights.bin"), r"weights 'weights\.bin': this service reads weights\.json"),
        (
            _edit("weights.json", documents={"neutral": 1, "joy": 1, "anger": 1, "sadness": -1}),
            r"documents\['sadness'\] must be a positive count, got -1",
        ),
        (
            _edit("weights.json", word_counts={"neutral": {"a": 1.5}, "joy": {}, "anger": {}, "sadness": {}}),
            r"word_counts\['neutral'\] must map words to counts",
        ),
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
    assert create_app().state.model.name == "affect-nb-1.0.0"
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
        [sys.executable, "-m", "affective_processing_center"],
        env=env,
        cwd=SERVICE_DIR,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"affective-processing-center: no model at {tmp_path}/affect-nb (expected weights.json, config.json): "
        "deploy it with its release's models\n"
    )
    assert done.stdout == ""  # refused before saying it starts, before uvicorn binds the port
