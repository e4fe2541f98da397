"""hello: a small HTTP service shipyard init made, with the two endpoints shipyard's canary needs.

GET /health answers {"status": "ok"}; POST /v1/echo answers the golden request of shipyard.toml.
Standard library only, so the image needs no wheels; replace it with your own service.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        if self.path == "/health":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"error": f"no such path {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/v1/echo":
            self._answer(404, {"error": f"no such path {self.path}"})
            return
        try:
            text = str(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))).get("text", ""))
        except (ValueError, AttributeError):
            self._answer(400, {"error": "expected a JSON object with a text field"})
            return
        self._answer(200, {"text": text, "length": len(text)})

    def log_message(self, format: str, *args: object) -> None:  # one line per request on stderr
        print(f"{self.address_string()} {format % args}", flush=True)


def serve() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8080"))), Handler)
    server.serve_forever()
