from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from shipyard.credentials import Credentials, Secret
from shipyard.errors import RegistryError
from shipyard.release.registry import RegistryClient
from shipyard.target import parse_target

MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:c", "size": 10},
        "layers": [
            {"mediaType": "x", "digest": "sha256:l1", "size": 100},
            {"mediaType": "x", "digest": "sha256:l2", "size": 5},
        ],
    }
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def client(handler, **kwargs) -> RegistryClient:  # type: ignore[no-untyped-def]
    return RegistryClient(parse_target("ghcr.io/acme"), transport=httpx.MockTransport(handler), **kwargs)


def test_bearer_challenge_then_manifest() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, request.headers.get("Authorization")))
        if request.url.host == "ghcr.io" and request.url.path == "/token":
            assert request.url.params["scope"] == "repository:acme/svc:pull"
            assert request.headers["Authorization"].startswith("Basic ")
            return httpx.Response(200, json={"token": "tok-123"})
        if request.headers.get("Authorization") != "Bearer tok-123":
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": 'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/svc:pull"'
                },
            )
        return httpx.Response(200, content=MANIFEST, headers={"Docker-Content-Digest": DIGEST})

    creds = Credentials("bot", Secret("s3cret"))
    manifest = client(handler, credentials=creds).manifest("acme/svc", "v1")
    assert manifest is not None and manifest.digest == DIGEST
    assert manifest.compressed_size == 115
    assert [path for path, _ in seen] == ["/v2/acme/svc/manifests/v1", "/token", "/v2/acme/svc/manifests/v1"]
    assert "s3cret" not in repr(creds)


def test_retries_5xx_and_429_with_backoff_then_succeeds() -> None:
    answers = [503, 429, 502, 200]
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0)
        return httpx.Response(status, content=MANIFEST if status == 200 else b"")

    assert client(handler, sleep=sleeps.append).resolve("acme/svc", "v1") == DIGEST
    assert len(sleeps) == 3 and all(0 < s <= 5 for s in sleeps)


def test_gives_up_after_attempts() -> None:
    sleeps: list[float] = []
    with pytest.raises(RegistryError, match="failed after retries: GET /v2/acme/svc/manifests/v1: HTTP 500"):
        client(lambda r: httpx.Response(500), attempts=3, sleep=sleeps.append).resolve("acme/svc", "v1")
    assert len(sleeps) == 2


def test_404_is_none_and_403_is_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(404 if "missing" in request.url.path else 403)

    c = client(handler, sleep=lambda s: None)
    assert c.manifest("acme/missing", "v1") is None
    with pytest.raises(RegistryError, match="access denied"):
        c.manifest("acme/private", "v1")
    assert len(calls) == 2


def test_digest_mismatch_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=MANIFEST, headers={"Docker-Content-Digest": "sha256:" + "0" * 64})

    with pytest.raises(RegistryError, match="does not match the content"):
        client(handler).manifest("acme/svc", "v1")
