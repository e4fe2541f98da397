"""The softmax load classifier, loaded from its model directory (``config.json`` + ``weights.safetensors``).

The weights are trained offline by ``model_ops_coordinator.train`` (``nox -s train``) and shipped as the
release's ``ops-softmax`` model, never trained here: a service that cannot load them refuses to start.
Every way the files can be wrong is a ``ModelError`` with one line that says which file and why.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
MODEL_FILES = (WEIGHTS_FILE, CONFIG_FILE)
MAX_HEADER_BYTES = 1 << 20

FloatArray = NDArray[np.float64]


class ModelError(Exception):
    """The model directory is missing, incomplete or unreadable; the message is one line for the log."""


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp: FloatArray = np.exp(shifted)
    out: FloatArray = exp / exp.sum(axis=-1, keepdims=True)
    return out


@dataclass(frozen=True)
class SoftmaxClassifier:
    name: str  # "<model>-<version>", as /v1/predict reports it
    labels: tuple[str, ...]
    mean: FloatArray  # feature standardisation, shape (d,)
    scale: FloatArray  # shape (d,)
    weights: FloatArray  # shape (d, k)
    bias: FloatArray  # shape (k,)

    @property
    def n_features(self) -> int:
        return int(self.weights.shape[0])

    def predict_proba(self, x: FloatArray) -> FloatArray:
        """Class probabilities for a batch ``(n, d)`` (or one row ``(d,)``)."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return _softmax(z @ self.weights + self.bias)

    def predict(self, features: Sequence[float]) -> tuple[str, dict[str, float]]:
        proba = self.predict_proba(np.asarray(features, dtype=np.float64).reshape(1, -1))[0]
        label = self.labels[int(np.argmax(proba))]
        return label, {lab: float(p) for lab, p in zip(self.labels, proba, strict=True)}

    def accuracy(self, x: FloatArray, y: Sequence[str]) -> float:
        pred = np.argmax(self.predict_proba(x), axis=1)
        truth = np.array([self.labels.index(lab) for lab in y])
        return float(np.mean(pred == truth))


def read_safetensors(path: Path) -> dict[str, FloatArray]:
    """The F64 tensors of a safetensors file (the subset of the format the trainer writes)."""
    data = path.read_bytes()
    if len(data) < 8:
        raise ModelError(f"{path}: not a safetensors file ({len(data)} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    if size > min(MAX_HEADER_BYTES, len(data) - 8):
        raise ModelError(f"{path}: not a safetensors file (header of {size} bytes)")
    try:
        header: Any = json.loads(data[8 : 8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: the safetensors header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: the safetensors header is not a JSON object")
    buffer = memoryview(data)[8 + size :]
    tensors: dict[str, FloatArray] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = info["dtype"], [int(n) for n in info["shape"]]
            start, end = (int(offset) for offset in info["data_offsets"])
        except (TypeError, KeyError, ValueError) as exc:
            raise ModelError(f"{path}: tensor {name!r}: malformed header entry ({exc!r})") from None
        if dtype != "F64":
            raise ModelError(f"{path}: tensor {name!r}: expected dtype F64, got {dtype!r}")
        if not (0 <= start <= end <= len(buffer)) or end - start != 8 * math.prod(shape):
            raise ModelError(f"{path}: tensor {name!r}: data_offsets {[start, end]} do not fit shape {shape}")
        tensors[name] = np.frombuffer(buffer[start:end], dtype="<f8").astype(np.float64).reshape(shape)
    return tensors


def _config(path: Path) -> dict[str, Any]:
    try:
        config: Any = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path}: expected a JSON object")
    for key in ("name", "version", "labels", "features"):
        if key not in config:
            raise ModelError(f"{path}: missing key {key!r}")
    labels, features = config["labels"], config["features"]
    for key, names in (("labels", labels), ("features", features)):
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ModelError(f"{path}: {key!r} must be a non-empty list of names")
    if config.get("weights", WEIGHTS_FILE) != WEIGHTS_FILE:
        raise ModelError(f"{path}: weights {config['weights']!r}: this service reads {WEIGHTS_FILE}")
    return config


def load_model(directory: Path) -> SoftmaxClassifier:
    """The classifier in ``directory``, checked whole (files, shapes, finite values) before it serves."""
    missing = [name for name in MODEL_FILES if not (directory / name).is_file()]
    if len(missing) == len(MODEL_FILES):
        raise ModelError(
            f"no model at {directory} (expected {', '.join(MODEL_FILES)}): deploy it with its release's models"
        )
    if missing:
        raise ModelError(
            f"incomplete model at {directory} (missing {', '.join(missing)} of {', '.join(MODEL_FILES)}): "
            f"deploy it with its release's models"
        )
    try:
        config = _config(directory / CONFIG_FILE)
        tensors = read_safetensors(directory / WEIGHTS_FILE)
    except OSError as exc:
        raise ModelError(f"cannot read the model at {directory}: {exc.strerror or exc}: {exc.filename}") from None
    d, k = len(config["features"]), len(config["labels"])
    expected = {"mean": (d,), "scale": (d,), "weights": (d, k), "bias": (k,)}
    for name, shape in expected.items():
        if name not in tensors:
            raise ModelError(f"{directory / WEIGHTS_FILE}: no tensor {name!r}")
        if tensors[name].shape != shape:
            raise ModelError(
                f"{directory / WEIGHTS_FILE}: tensor {name!r} has shape {list(tensors[name].shape)}, "
                f"expected {list(shape)} for {d} features and {k} labels ({CONFIG_FILE})"
            )
        if not np.all(np.isfinite(tensors[name])):
            raise ModelError(f"{directory / WEIGHTS_FILE}: tensor {name!r} has values that are not finite")
    if not np.all(tensors["scale"] > 0):
        raise ModelError(f"{directory / WEIGHTS_FILE}: tensor 'scale' must be positive")
    return SoftmaxClassifier(
        name=f"{config['name']}-{config['version']}",
        labels=tuple(config["labels"]),
        mean=tensors["mean"],
        scale=tensors["scale"],
        weights=tensors["weights"],
        bias=tensors["bias"],
    )
