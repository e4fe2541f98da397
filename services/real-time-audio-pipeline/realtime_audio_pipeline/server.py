"""WebSocket server (websockets asyncio API): ``/v1/stream`` for audio, plain-HTTP ``GET /health``."""

from __future__ import annotations

import asyncio
import http
import json
import signal
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from . import SERVICE_NAME
from .dsp import handle_message
from .runtime import health_payload

STREAM_PATH = "/v1/stream"
HEALTH_PATH = "/health"
MAX_MESSAGE_BYTES = 1 << 20  # ~32 s of 16 kHz int16 audio per binary message


def json_response(connection: ServerConnection, status: int, payload: Any) -> Response:
    response = connection.respond(http.HTTPStatus(status), json.dumps(payload))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def process_request(connection: ServerConnection, request: Request) -> Response | None:
    """Answer ``GET /health`` over plain HTTP, 404 anything but the stream path; else do the handshake."""
    path = urlsplit(request.path).path
    if path == HEALTH_PATH:
        return json_response(connection, 200, health_payload(SERVICE_NAME))
    if path != STREAM_PATH:
        return json_response(connection, 404, {"error": f"not found: {path}"})
    return None


async def stream(connection: ServerConnection) -> None:
    """One JSON reply per message; invalid input gets ``{"error": ...}`` and the socket stays open."""
    try:
        async for message in connection:
            await connection.send(json.dumps(handle_message(message)))
    except ConnectionClosed:
        pass


def create_server(host: str, port: int) -> serve:
    """``async with create_server(host, port) as server`` listens until the block exits."""
    return serve(stream, host, port, process_request=process_request, max_size=MAX_MESSAGE_BYTES)


def bound_port(server: Server) -> int:
    return int(next(iter(server.sockets)).getsockname()[1])


async def run(host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then close all connections (1001 going away) and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with create_server(host, port) as server:
        print(
            f"{SERVICE_NAME}: listening on ws://{host}:{bound_port(server)}{STREAM_PATH} "
            f"(health: GET {HEALTH_PATH}, workers: 1)",
            flush=True,
        )
        await stop.wait()
    print(f"{SERVICE_NAME}: stopped", flush=True)
