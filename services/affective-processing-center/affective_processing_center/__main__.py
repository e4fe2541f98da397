"""``python -m affective_processing_center``: serve on 0.0.0.0:$PORT, $UVICORN_WORKERS (capped) workers."""

from __future__ import annotations

import uvicorn

from . import DEFAULT_PORT, SERVICE_NAME
from .runtime import effective_workers, env_port


def main() -> None:
    port = env_port(DEFAULT_PORT)
    workers = effective_workers()
    print(f"{SERVICE_NAME}: starting on 0.0.0.0:{port} with {workers} worker(s)", flush=True)
    uvicorn.run(
        "affective_processing_center.app:app",
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
