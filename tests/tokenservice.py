"""A Docker/OCI token service for tests: the ``auth: token`` half of a real ``docker-registry``.

It speaks the protocol of https://distribution.github.io/distribution/spec/auth/token/:
``GET /token?service=…&scope=repository:NAME:pull,push`` with HTTP Basic credentials answers
``{"token": …, "access_token": …}``, a JWT signed with ES256 that names the signing
certificate in its ``x5c`` header. distribution 2.8 accepts such a token when that
certificate is in its ``rootcertbundle`` (it verifies the chain, then the signature), the
``iss`` is its ``issuer`` and the ``aud`` its ``service``.

Loopback only, an ephemeral port, and a bounded life: the server stops by itself after
``max_seconds`` even if a test forgets to close it. It never logs a request (query strings
and headers stay out of test output); what it did is kept in ``issued`` for assertions.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ACTIONS = frozenset({"pull", "push"})


@dataclass(frozen=True)
class SigningKey:
    """An EC P-256 key and its self-signed certificate; ``bundle`` is the registry's rootcertbundle."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    cert_der: bytes = field(repr=False)
    bundle: Path

    @classmethod
    def create(cls, directory: Path, common_name: str = "shipyard test token issuer") -> SigningKey:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        directory.mkdir(parents=True, exist_ok=True)
        bundle = directory / "token-root.pem"
        bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key=key, cert_der=cert.public_bytes(serialization.Encoding.DER), bundle=bundle)


@dataclass(frozen=True)
class Account:
    password: str = field(repr=False)
    actions: frozenset[str] = ACTIONS  # what this account may be granted on any repository


@dataclass(frozen=True)
class Issued:
    """One answered token request: who asked (None: anonymous), the query, the HTTP status, the token."""

    username: str | None
    query: dict[str, list[str]]
    status: int
    token: str | None = field(default=None, repr=False)

    @property
    def scopes(self) -> list[str]:
        return self.query.get("scope", [])


@dataclass
class TokenService:
    signing: SigningKey
    issuer: str
    service: str
    accounts: dict[str, Account] = field(repr=False)
    anonymous: bool = False  # True: anonymous requests get a token with no access (Docker Hub's way)
    token_seconds: int = 300
    max_seconds: float = 600.0
    issued: list[Issued] = field(default_factory=list, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, init=False, repr=False)
    _serve: threading.Thread | None = field(default=None, init=False, repr=False)
    _deadline: threading.Timer | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def realm(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    @property
    def tokens(self) -> list[str]:
        with self._lock:
            return [i.token for i in self.issued if i.token]

    def start(self) -> TokenService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # http.server's naming
                status, body = service._answer(self.path, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(status)
                if status == 401:
                    self.send_header("WWW-Authenticate", f'Basic realm="{service.service}"')
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # the request line carries the scope; keep test output quiet

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._serve = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._deadline = threading.Timer(self.max_seconds, self._expire)
        self._deadline.daemon = True
        self._serve.start()
        self._deadline.start()
        return self

    def close(self) -> None:
        if self._server is None:
            return
        if self._deadline is not None:
            self._deadline.cancel()
        self._server.shutdown()
        self._server.server_close()
        if self._serve is not None:
            self._serve.join(timeout=5)
        self._server = None

    def _expire(self) -> None:
        """The bounded life: stop serving and free the port (a late client is refused, never left hanging)."""
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> TokenService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the protocol ----------------------------------------------------------
    def _answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, object]]:
        url = urlsplit(path)
        query = parse_qs(url.query)
        if url.path != "/token":
            return self._record(None, query, 404, {"errors": [{"code": "NOT_FOUND"}]})
        username, account = self._account(authorization)
        if account is None and (authorization is not None or not self.anonymous):
            return self._record(username, query, 401, {"errors": [{"code": "UNAUTHORIZED"}]})
        if query.get("service", [self.service]) != [self.service]:
            return self._record(username, query, 400, {"errors": [{"code": "DENIED", "message": "unknown service"}]})
        access = [grant for scope in query.get("scope", []) if (grant := _grant(scope, account))]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": username or "",
            "aud": self.service,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.token_seconds,
            "jti": secrets.token_hex(12),
            "access": access,
        }
        headers = {"x5c": [base64.b64encode(self.signing.cert_der).decode()]}
        token = jwt.encode(claims, self.signing.key, algorithm="ES256", headers=headers)
        body: dict[str, object] = {
            "token": token,
            "access_token": token,
            "expires_in": self.token_seconds,
            "issued_at": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(),
        }
        return self._record(username, query, 200, body, token)

    def _account(self, authorization: str | None) -> tuple[str | None, Account | None]:
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            username, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, None
        account = self.accounts.get(username)
        if account is None or not hmac.compare_digest(account.password.encode(), password.encode()):
            return username, None
        return username, account

    def _record(
        self, username: str | None, query: dict[str, list[str]], status: int, body: dict[str, object], token: str = ""
    ) -> tuple[int, dict[str, object]]:
        with self._lock:
            self.issued.append(Issued(username, query, status, token or None))
        return status, body


def _grant(scope: str, account: Account | None) -> dict[str, object] | None:
    """``repository:NAME:a,b`` → the access claim for the actions this account may have (None: nothing)."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if kind != "repository" or not name or account is None:
        return None
    granted = sorted(set(actions.split(",")) & account.actions)
    return {"type": kind, "name": name, "actions": granted} if granted else None
