"""``python -m realtime_audio_pipeline``: serve on 0.0.0.0:$PORT until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging

from . import DEFAULT_PORT
from .runtime import env_port
from .server import run


class OneLineHandshakeErrors(logging.Filter):
    """Log failed handshakes (port scans, HEAD probes, plain GETs of the stream path) without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.getMessage() == "opening handshake failed":
            record.msg, record.args = f"opening handshake failed: {record.exc_info[1]}", ()
            record.exc_info = None
        return True


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("websockets.server").addFilter(OneLineHandshakeErrors())
    asyncio.run(run("0.0.0.0", env_port(DEFAULT_PORT)))


if __name__ == "__main__":
    main()
