"""A fault-injecting HTTP proxy in front of the real local registry, for tests.

Loopback only and bounded in time (it shuts itself down after ``lifetime_s``). A share
``rate`` of the requests whose path matches ``only`` get a fault instead of being forwarded:
500/502/503, 429 with ``Retry-After``, a reset connection, or a stall past the client's
timeout. Which request gets which fault is drawn from ``random.Random(seed)`` in arrival
order, so a run is reproducible up to the order of concurrent requests. ``Host`` is passed
through unchanged, so the registry's ``Location`` headers point back at the proxy.

``hold`` lets a test freeze requests matching a pattern until released, to kill a client
at a known point (mid-push, mid-promotion).
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = ("500", "502", "503", "429", "reset", "stall")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int] = ("127.0.0.1", 5000),
        *,
        rate: float = 0.0,
        seed: int = 0,
        kinds: tuple[str, ...] = KINDS,
        only: str = "",
        budget: int | None = None,
        retry_after_s: int = 1,
        stall_s: float = 2.0,
        lifetime_s: float = 900.0,
    ) -> None:
        self.upstream = upstream
        self.rate = rate
        self.kinds = kinds
        self.only = re.compile(only)
        self.budget = budget  # at most this many faults in all (None: no limit)
        self.retry_after_s = retry_after_s
        self.stall_s = stall_s
        self.requests = 0
        self.faults: Counter[str] = Counter()
        self.seen: list[tuple[str, str, str, str]] = []  # (method, path, outcome, user agent)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._holds: list[tuple[re.Pattern[str], threading.Event, threading.Event]] = []
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._timer.cancel()
        for _, _, release in self._holds:
            release.set()
        self._server.shutdown()
        self._server.server_close()

    def configure(
        self,
        *,
        rate: float | None = None,
        kinds: tuple[str, ...] | None = None,
        only: str | None = None,
        budget: int | None = None,
        seed: int | None = None,
    ) -> None:
        with self._lock:
            if seed is not None:
                self._rng.seed(seed)
            self.budget = budget
            if rate is not None:
                self.rate = rate
            if kinds is not None:
                self.kinds = kinds
            if only is not None:
                self.only = re.compile(only)

    @contextmanager
    def hold(self, pattern: str) -> Iterator[threading.Event]:
        """Requests whose "METHOD path agent" matches are frozen until the block ends; the event is set
        when the first one arrives."""
        arrived, release = threading.Event(), threading.Event()
        entry = (re.compile(pattern), arrived, release)
        with self._lock:
            self._holds.append(entry)
        try:
            yield arrived
        finally:
            release.set()
            with self._lock:
                self._holds.remove(entry)

    def draw(self, method: str, path: str, agent: str = "") -> str | None:
        """The fault for this request, or None to forward it; ``only`` is matched on "METHOD path agent"."""
        with self._lock:
            self.requests += 1
            if not self.only.search(f"{method} {path} {agent}"):
                return None
            if self.budget is not None and sum(self.faults.values()) >= self.budget:
                return None
            if self._rng.random() >= self.rate:
                return None
            kind = self._rng.choice(self.kinds)
            self.faults[kind] += 1
            return kind

    def _held(self, method: str, path: str, agent: str) -> threading.Event | None:
        with self._lock:
            for pattern, arrived, release in self._holds:
                if pattern.search(f"{method} {path} {agent}"):
                    arrived.set()
                    return release
        return None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up (a killed shipyard, an injected reset) is not news."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # a TLS hello is answered with an HTTP status line, so Go clients (containerd, buildx) see
        # "server gave HTTP response to HTTPS client" and fall back to plain HTTP, as they do for the registry
        default_request_version = "HTTP/1.0"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self) -> None:
            body = self._body()
            release = proxy._held(self.command, self.path, self.headers.get("User-Agent", ""))
            if release is not None:
                release.wait(timeout=300)
            fault = proxy.draw(self.command, self.path, self.headers.get("User-Agent", ""))
            proxy.seen.append((self.command, self.path, fault or "forwarded", self.headers.get("User-Agent", "")))
            if fault in ("500", "502", "503", "429"):
                self._answer(int(fault))
            elif fault == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
            elif fault == "stall":
                threading.Event().wait(proxy.stall_s)  # past the client's timeout, then hang up
                self.close_connection = True
            else:
                self._forward(body)

        def _answer(self, status: int) -> None:
            text = f"injected fault {status}\n".encode()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", str(proxy.retry_after_s))
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(text)

        def _forward(self, body: bytes) -> None:
            upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                # header by header: Go clients send several Accept lines, and a dict would keep one
                upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for key, value in self.headers.items():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        upstream.putheader(key, value)
                if body or self.command in ("PUT", "POST", "PATCH"):
                    upstream.putheader("Content-Length", str(len(body)))
                upstream.endheaders(body or None)
                response = upstream.getresponse()
                length = response.getheader("Content-Length")
                data = b"" if self.command == "HEAD" or length is not None else response.read()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", length if length is not None else str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if data:
                    self.wfile.write(data)
                while chunk := response.read(1 << 20):  # streamed: layers can be hundreds of MB
                    self.wfile.write(chunk)
            finally:
                upstream.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    return Handler
