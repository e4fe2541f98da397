"""A multinomial logistic-regression (softmax) load classifier, trained with numpy at startup.

Features (all normalised to [0, 1]) describe one serving node:
``cpu`` utilisation, ``memory`` utilisation, request ``queue`` fill, and ``latency`` (p95 / SLO).
Labels: ``low``, ``medium``, ``high``. Training is full-batch gradient descent from zero weights
for a fixed number of iterations, so the model is bit-for-bit deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

MODEL_NAME = "load-softmax"
MODEL_VERSION = "1.0.0"
LABELS: tuple[str, ...] = ("low", "medium", "high")
FEATURES: tuple[str, ...] = ("cpu", "memory", "queue", "latency")

# (cpu, memory, queue, latency) -> label. Three well separated clusters, 15 points each.
TRAINING_DATA: tuple[tuple[tuple[float, float, float, float], str], ...] = (
    ((0.10, 0.20, 0.02, 0.10), "low"),
    ((0.15, 0.18, 0.05, 0.12), "low"),
    ((0.12, 0.25, 0.00, 0.08), "low"),
    ((0.20, 0.22, 0.04, 0.15), "low"),
    ((0.08, 0.15, 0.01, 0.09), "low"),
    ((0.18, 0.28, 0.06, 0.14), "low"),
    ((0.22, 0.20, 0.03, 0.11), "low"),
    ((0.05, 0.12, 0.00, 0.06), "low"),
    ((0.14, 0.30, 0.05, 0.13), "low"),
    ((0.25, 0.24, 0.08, 0.18), "low"),
    ((0.11, 0.17, 0.02, 0.07), "low"),
    ((0.17, 0.21, 0.04, 0.16), "low"),
    ((0.09, 0.26, 0.03, 0.10), "low"),
    ((0.21, 0.14, 0.07, 0.12), "low"),
    ((0.13, 0.19, 0.01, 0.09), "low"),
    ((0.50, 0.48, 0.35, 0.42), "medium"),
    ((0.55, 0.52, 0.30, 0.38), "medium"),
    ((0.45, 0.55, 0.40, 0.45), "medium"),
    ((0.58, 0.50, 0.33, 0.40), "medium"),
    ((0.48, 0.45, 0.38, 0.36), "medium"),
    ((0.52, 0.58, 0.28, 0.44), "medium"),
    ((0.42, 0.50, 0.36, 0.41), "medium"),
    ((0.60, 0.47, 0.42, 0.47), "medium"),
    ((0.47, 0.53, 0.31, 0.35), "medium"),
    ((0.53, 0.44, 0.37, 0.43), "medium"),
    ((0.56, 0.56, 0.34, 0.39), "medium"),
    ((0.44, 0.49, 0.29, 0.37), "medium"),
    ((0.51, 0.51, 0.41, 0.46), "medium"),
    ((0.49, 0.57, 0.32, 0.40), "medium"),
    ((0.57, 0.46, 0.39, 0.42), "medium"),
    ((0.90, 0.85, 0.80, 0.88), "high"),
    ((0.85, 0.90, 0.75, 0.82), "high"),
    ((0.95, 0.88, 0.85, 0.92), "high"),
    ((0.88, 0.80, 0.90, 0.85), "high"),
    ((0.92, 0.92, 0.78, 0.90), "high"),
    ((0.83, 0.86, 0.82, 0.80), "high"),
    ((0.97, 0.84, 0.88, 0.95), "high"),
    ((0.86, 0.94, 0.76, 0.87), "high"),
    ((0.91, 0.82, 0.92, 0.83), "high"),
    ((0.89, 0.89, 0.84, 0.91), "high"),
    ((0.94, 0.87, 0.79, 0.86), "high"),
    ((0.82, 0.91, 0.86, 0.84), "high"),
    ((0.96, 0.83, 0.81, 0.93), "high"),
    ((0.87, 0.95, 0.87, 0.89), "high"),
    ((0.93, 0.86, 0.83, 0.81), "high"),
)

FloatArray = NDArray[np.float64]


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp: FloatArray = np.exp(shifted)
    out: FloatArray = exp / exp.sum(axis=-1, keepdims=True)
    return out


@dataclass(frozen=True)
class SoftmaxClassifier:
    labels: tuple[str, ...]
    mean: FloatArray  # feature standardisation, shape (d,)
    scale: FloatArray  # shape (d,)
    weights: FloatArray  # shape (d, k)
    bias: FloatArray  # shape (k,)

    @property
    def name(self) -> str:
        return f"{MODEL_NAME}-{MODEL_VERSION}"

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


def training_arrays() -> tuple[FloatArray, list[str]]:
    x = np.array([row for row, _ in TRAINING_DATA], dtype=np.float64)
    return x, [label for _, label in TRAINING_DATA]


def train(
    x: FloatArray,
    y: Sequence[str],
    labels: tuple[str, ...] = LABELS,
    iterations: int = 500,
    learning_rate: float = 0.5,
    l2: float = 1e-3,
) -> SoftmaxClassifier:
    """Full-batch gradient descent on the mean cross-entropy (+ L2 on weights), zero init."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    n, d = z.shape
    onehot = np.zeros((n, len(labels)))
    onehot[np.arange(n), [labels.index(lab) for lab in y]] = 1.0
    w = np.zeros((d, len(labels)))
    b = np.zeros(len(labels))
    for _ in range(iterations):
        err = _softmax(z @ w + b) - onehot  # d(loss)/d(logits), shape (n, k)
        w -= learning_rate * (z.T @ err / n + l2 * w)
        b -= learning_rate * err.mean(axis=0)
    return SoftmaxClassifier(labels=labels, mean=mean, scale=scale, weights=w, bias=b)


def train_default() -> SoftmaxClassifier:
    x, y = training_arrays()
    return train(x, y)
