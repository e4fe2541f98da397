"""``python -m realtime_audio_pipeline``: serve on 0.0.0.0:$PORT until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio

from . import DEFAULT_PORT
from .runtime import env_port
from .server import run


def main() -> None:
    asyncio.run(run("0.0.0.0", env_port(DEFAULT_PORT)))


if __name__ == "__main__":
    main()
