"""Train the load classifier and write ``models/ops-softmax/``: ``python -m model_ops_coordinator.train``.

Runs on the host, not in the image (``.dockerignore`` keeps this file out of it), with nothing but the
standard library, so ``nox -s train`` needs no virtualenv. The output is the same bytes on every run and
every machine: the data and its order are fixed, the weights start at zero, and every operation is IEEE
754 arithmetic Python rounds the same way everywhere (``+ - * /``, ``sqrt``, ``math.fsum``, ``ldexp``).
The one transcendental function, ``exp``, is computed here from those operations rather than taken from
the C library or numpy, whose last bits differ between platforms and SIMD paths; sums go through
``math.fsum`` (correctly rounded), never ``sum()``, whose float algorithm changed in Python 3.12.
Nothing in the files depends on the clock, the paths or the environment.

Features (all normalised to [0, 1]) describe one serving node: ``cpu`` utilisation, ``memory``
utilisation, request ``queue`` fill, and ``latency`` (p95 / SLO). Labels: ``low``, ``medium``, ``high``.
The model is multinomial logistic regression on standardised features, fitted by full-batch gradient
descent on the mean cross-entropy plus an L2 penalty on the weights.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import struct
import sys
from collections.abc import Sequence
from pathlib import Path

from . import MODEL_NAME

MODEL_VERSION = "1.0.0"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
LABELS: tuple[str, ...] = ("low", "medium", "high")
FEATURES: tuple[str, ...] = ("cpu", "memory", "queue", "latency")
ITERATIONS = 500
LEARNING_RATE = 0.5
L2 = 1e-3
REPO_MODELS = Path(__file__).resolve().parents[3] / "models"

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

Matrix = list[list[float]]
Tensors = dict[str, tuple[list[int], list[float]]]  # name -> (shape, row-major values)

# Cody-Waite split of ln 2: k * _LN2_HI is exact for the |k| < 2**11 that reach it.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00


def exp(x: float) -> float:
    """e**x from correctly rounded operations only (so the same bits everywhere), within ~1 ulp of libm."""
    if x < -745.0:
        return 0.0
    k = round(x * _INV_LN2)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln(2) / 2
    total = 1.0
    for n in range(20, 0, -1):  # Taylor series to r**20 / 20! (below 2**-80), by Horner's rule
        total = 1.0 + total * r / n
    return math.ldexp(total, k)


def softmax(logits: Sequence[float]) -> list[float]:
    top = max(logits)
    exps = [exp(v - top) for v in logits]
    total = math.fsum(exps)
    return [v / total for v in exps]


def standardisation(x: Matrix) -> tuple[list[float], list[float]]:
    """Per-feature mean and population standard deviation (1 where a feature is constant)."""
    n = len(x)
    mean = [math.fsum(row[f] for row in x) / n for f in range(len(x[0]))]
    scale = [math.sqrt(math.fsum((row[f] - mean[f]) ** 2 for row in x) / n) for f in range(len(x[0]))]
    return mean, [s if s > 0 else 1.0 for s in scale]


def fit(
    x: Matrix,
    y: Sequence[str],
    labels: Sequence[str] = LABELS,
    iterations: int = ITERATIONS,
    learning_rate: float = LEARNING_RATE,
    l2: float = L2,
) -> Tensors:
    """Full-batch gradient descent from zero weights: ``mean``, ``scale``, ``weights`` (d, k), ``bias`` (k)."""
    mean, scale = standardisation(x)
    z = [[(v - m) / s for v, m, s in zip(row, mean, scale, strict=True)] for row in x]
    n, d, k = len(z), len(mean), len(labels)
    target = [labels.index(label) for label in y]
    w = [[0.0] * k for _ in range(d)]
    b = [0.0] * k
    for _ in range(iterations):
        err: Matrix = []  # d(loss)/d(logits) per example, shape (n, k)
        for row, t in zip(z, target, strict=True):
            p = softmax([math.fsum(row[f] * w[f][j] for f in range(d)) + b[j] for j in range(k)])
            p[t] -= 1.0
            err.append(p)
        for f in range(d):
            for j in range(k):
                grad = math.fsum(z[i][f] * err[i][j] for i in range(n)) / n + l2 * w[f][j]
                w[f][j] -= learning_rate * grad
        for j in range(k):
            b[j] -= learning_rate * (math.fsum(e[j] for e in err) / n)
    return {
        "bias": ([k], b),
        "mean": ([d], mean),
        "scale": ([d], scale),
        "weights": ([d, k], [v for row in w for v in row]),
    }


def safetensors_bytes(tensors: Tensors, metadata: dict[str, str]) -> bytes:
    """The safetensors encoding of float64 tensors: u64 LE header length, JSON header, then the data.

    The bytes the reference implementation (``safetensors.numpy.save_file``) writes for the same tensors:
    data in name order, little-endian, row-major; the header compact JSON, metadata first, then each
    tensor's dtype, shape and offsets, padded with spaces to a multiple of 8 bytes."""
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    data = bytearray()
    for name in sorted(tensors):
        shape, values = tensors[name]
        assert math.prod(shape) == len(values), name
        start = len(data)
        data += struct.pack(f"<{len(values)}d", *values)
        header[name] = {"dtype": "F64", "shape": shape, "data_offsets": [start, len(data)]}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + bytes(data)


def training_data_digest() -> str:
    """sha256 of the training set as canonical JSON, so config.json names exactly what was learnt from."""
    rows = [[list(features), label] for features, label in TRAINING_DATA]
    return "sha256:" + hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def model_files() -> dict[str, bytes]:
    """The files of ``models/ops-softmax/``, by name: the trained weights and the config the service reads."""
    x = [list(features) for features, _ in TRAINING_DATA]
    y = [label for _, label in TRAINING_DATA]
    weights = safetensors_bytes(fit(x, y), {"model": MODEL_NAME, "version": MODEL_VERSION})
    config = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "architecture": "softmax-regression",
        "weights": WEIGHTS_FILE,
        "features": list(FEATURES),
        "labels": list(LABELS),
        "input": "features in [0, 1], standardised with the weights' mean and scale",
        "training": {
            "examples": len(TRAINING_DATA),
            "data": training_data_digest(),
            "method": "full-batch gradient descent from zero weights, mean cross-entropy + L2",
            "iterations": ITERATIONS,
            "learning_rate": LEARNING_RATE,
            "l2": L2,
        },
    }
    return {CONFIG_FILE: (json.dumps(config, indent=2, sort_keys=True) + "\n").encode(), WEIGHTS_FILE: weights}


def write_files(out: Path, files: dict[str, bytes]) -> None:
    """Write each file atomically (a temporary beside it, then a rename): a reader never sees half a model."""
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, out / name)


def differing(out: Path, files: dict[str, bytes]) -> list[str]:
    """The names of ``files`` whose bytes in ``out`` are not these (missing files included)."""
    return [
        name for name, content in files.items() if not (out / name).is_file() or (out / name).read_bytes() != content
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_ops_coordinator.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_MODELS / MODEL_NAME, help="model directory to write")
    parser.add_argument("--check", action="store_true", help="write nothing; fail if the directory differs")
    args = parser.parse_args(argv)
    files = model_files()
    if args.check:
        if stale := differing(args.out, files):
            print(
                f"{args.out}: {', '.join(stale)} differ from what training gives; run `nox -s train`", file=sys.stderr
            )
            return 1
        print(f"{args.out}: up to date")
        return 0
    write_files(args.out, files)
    print(f"{args.out}: wrote {', '.join(sorted(files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
