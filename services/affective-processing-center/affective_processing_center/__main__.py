"""``python -m affective_processing_center``: load the model, then serve on 0.0.0.0:$PORT ($UVICORN_WORKERS, capped).

The model is loaded once here, before uvicorn binds the port or starts a worker, so a missing or broken
model is one log line and exit status 1 (the container never reports healthy), not a traceback per worker.
"""

from __future__ import annotations

import uvicorn

from . import DEFAULT_PORT, MODEL_NAME, SERVICE_NAME
from .classifier import ModelError, load_model
from .runtime import effective_workers, env_port, model_dir


def main() -> None:
    port = env_port(DEFAULT_PORT)
    workers = effective_workers()
    try:
        model = load_model(model_dir(MODEL_NAME))
    except ModelError as exc:
        raise SystemExit(f"{SERVICE_NAME}: {exc}") from None
    print(f"{SERVICE_NAME}: model {model.name} from {model_dir(MODEL_NAME)}", flush=True)
    print(f"{SERVICE_NAME}: starting on 0.0.0.0:{port} with {workers} worker(s)", flush=True)
    uvicorn.run(
        "affective_processing_center.app:create_app",
        factory=True,
        host="0.0.0.0",
        port=port,
        workers=workers,
        loop="asyncio",
        http="h11",
        lifespan="off",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
