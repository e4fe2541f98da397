"""HTTP layer: ``GET /health`` and ``POST /v1/predict``; uvicorn calls ``model_ops_coordinator.app:create_app``."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import MODEL_NAME, SERVICE_NAME
from .model import SoftmaxClassifier, load_model
from .runtime import health_payload, model_dir

MAX_BODY_BYTES = 64 * 1024


class InvalidInput(ValueError):
    """The request body is not a valid prediction request."""


def parse_features(body: bytes, n_features: int) -> list[float]:
    """Validate a ``{"features": [...]}`` body and return the features as floats."""
    try:
        payload: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or "features" not in payload:
        raise InvalidInput('expected a JSON object like {"features": [...]}')
    features = payload["features"]
    if not isinstance(features, list):
        raise InvalidInput("'features' must be a list of numbers")
    if len(features) != n_features:
        raise InvalidInput(f"'features' must have exactly {n_features} numbers, got {len(features)}")
    values: list[float] = []
    for i, value in enumerate(features):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidInput(f"features[{i}] must be a finite number, got {value!r}")
        values.append(float(value))
    return values


def error(message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def health(request: Request) -> JSONResponse:
    return JSONResponse(health_payload(SERVICE_NAME))


async def predict(request: Request) -> JSONResponse:
    model: SoftmaxClassifier = request.app.state.model
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return error(f"body larger than {MAX_BODY_BYTES} bytes", 413)
    try:
        features = parse_features(body, model.n_features)
    except InvalidInput as exc:
        return error(str(exc))
    label, probabilities = model.predict(features)
    return JSONResponse(
        {
            "label": label,
            "probabilities": {k: round(v, 6) for k, v in probabilities.items()},
            "model": model.name,
        }
    )


def create_app(model: SoftmaxClassifier | None = None) -> Starlette:
    """The app serving ``model``; by default the one at ``$MODEL_CACHE_DIR/ops-softmax``, loaded once per
    worker before it serves (a ``ModelError`` if it is not there)."""
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/predict", predict, methods=["POST"]),
        ]
    )
    app.state.model = model if model is not None else load_model(model_dir(MODEL_NAME))
    return app
