"""A tiny TCP relay: accept on one address, copy bytes both ways to another.

The second Docker engine (second_engine.py) lives in a network namespace of its own, where the
host's 127.0.0.1:5000 registry is out of reach; two relays bring it back under the same name,
``localhost:5000``. Used as a thread in the test process and, inside the namespace, as a process::

    python tcp_relay.py LISTEN_HOST LISTEN_PORT CONNECT_HOST CONNECT_PORT

The process prints one line, ``listening HOST:PORT``, once its socket is bound: that line is the
readiness signal the parent waits for. Standard library only, so it runs with any python3.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False


class Relay:
    """Accepts on ``listen_host:listen_port`` and relays each connection to ``connect_host:connect_port``.

    The socket is bound in the constructor, so a port in use fails there and a client may connect as
    soon as it returns; ``start()`` serves from a daemon thread, ``serve_forever()`` from the caller's.
    """

    def __init__(self, listen_host: str, listen_port: int, connect_host: str, connect_port: int) -> None:
        self.target = (connect_host, connect_port)
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                relay._relay(self.request)

        self._server = _Server((listen_host, listen_port), Handler)
        self.address: tuple[str, int] = self._server.server_address[:2]  # type: ignore[assignment]

    def start(self) -> Relay:
        self._thread = threading.Thread(target=self.serve_forever, name=f"relay-{self.address[1]}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.1)

    def close(self) -> None:
        """Stop accepting and cut the connections still open."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        with self._lock:
            live, self._live = self._live, set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            return  # the client sees the connection close, as it would on a refused connect
        upstream.settimeout(None)
        with self._lock:
            self._live.update((client, upstream))
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        with self._lock:
            self._live.difference_update((client, upstream))
        upstream.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until EOF, then pass the half-close on."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: tcp_relay.py LISTEN_HOST LISTEN_PORT CONNECT_HOST CONNECT_PORT", file=sys.stderr)
        return 2
    relay = Relay(argv[0], int(argv[1]), argv[2], int(argv[3]))
    print(f"listening {relay.address[0]}:{relay.address[1]}", flush=True)
    try:
        relay.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
