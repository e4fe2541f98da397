"""HTTP layer: GET /health and POST /v1/affect; uvicorn calls ``affective_processing_center.app:create_app``."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import MODEL_NAME, SERVICE_NAME
from .classifier import NaiveBayes, load_model, tokenize
from .runtime import health_payload, model_dir

MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_CHARS = 10_000


class InvalidInput(ValueError):
    """The request body is not a valid affect request."""


def parse_text(body: bytes) -> str:
    """Validate a ``{"text": "..."}`` body and return the text (with at least one word, bounded length)."""
    try:
        payload: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict) or "text" not in payload:
        raise InvalidInput('expected a JSON object like {"text": "..."}')
    text = payload["text"]
    if not isinstance(text, str):
        raise InvalidInput("'text' must be a string")
    if not text.strip():
        raise InvalidInput("'text' is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"'text' is longer than {MAX_TEXT_CHARS} characters")
    if not tokenize(text):
        raise InvalidInput("'text' contains no words")
    return text


def error(message: str, status: int = 422) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def health(request: Request) -> JSONResponse:
    return JSONResponse(health_payload(SERVICE_NAME))


async def affect(request: Request) -> JSONResponse:
    model: NaiveBayes = request.app.state.model
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return error(f"body larger than {MAX_BODY_BYTES} bytes", 413)
    try:
        text = parse_text(body)
    except InvalidInput as exc:
        return error(str(exc))
    label, scores, n_tokens = model.classify(text)
    return JSONResponse(
        {
            "label": label,
            "scores": {lab: round(p, 4) for lab, p in scores.items()},
            "tokens": n_tokens,
        }
    )


def create_app(model: NaiveBayes | None = None) -> Starlette:
    """The app serving ``model``; by default the one at ``$MODEL_CACHE_DIR/affect-nb``, loaded once per
    worker before it serves (a ``ModelError`` if it is not there)."""
    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/affect", affect, methods=["POST"]),
        ]
    )
    app.state.model = model if model is not None else load_model(model_dir(MODEL_NAME))
    return app
