from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from shipyard.config.registry import parse_registry
from shipyard.errors import RegistryError
from shipyard.oci.client import RegistryClient
from shipyard.oci.credentials import Credentials, Secret
from shipyard.oci.retry import RetryPolicy, retry_after_seconds

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
    return RegistryClient(parse_registry("ghcr.io/acme"), transport=httpx.MockTransport(handler), **kwargs)


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


def test_gives_up_after_attempts_and_says_which_request_failed_how_often() -> None:
    sleeps: list[float] = []
    with pytest.raises(RegistryError, match=r"GET /v2/acme/svc/manifests/v1 failed 3 time\(s\) .*last: HTTP 500"):
        client(lambda r: httpx.Response(500), policy=RetryPolicy(attempts=3), sleep=sleeps.append).resolve(
            "acme/svc", "v1"
        )
    assert len(sleeps) == 2


def test_retry_after_is_honoured_and_counted() -> None:
    answers = [429, 200]
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0)
        headers = {"Retry-After": "3"} if status == 429 else {}
        return httpx.Response(status, content=MANIFEST if status == 200 else b"", headers=headers)

    c = client(handler, sleep=sleeps.append)
    assert c.resolve("acme/svc", "v1") == DIGEST
    assert sleeps and sleeps[0] >= 3
    assert c.retried == 1


def test_a_retry_after_past_the_deadline_gives_up_at_once() -> None:
    sleeps: list[float] = []
    handler = lambda r: httpx.Response(429, headers={"Retry-After": "600"})  # noqa: E731
    with pytest.raises(RegistryError, match=r"failed 1 time\(s\).*HTTP 429, Retry-After 600 s"):
        client(handler, policy=RetryPolicy(deadline_s=10), sleep=sleeps.append).resolve("acme/svc", "v1")
    assert sleeps == []


def test_timeouts_and_resets_are_retried_within_the_deadline() -> None:
    faults: list[Exception] = [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset")]

    def handler(request: httpx.Request) -> httpx.Response:
        if faults:
            raise faults.pop(0)
        return httpx.Response(200, content=MANIFEST)

    c = client(handler, sleep=lambda s: None)
    assert c.resolve("acme/svc", "v1") == DIGEST
    assert c.retried == 2


def test_retry_delays_grow_and_stay_bounded() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=8, deadline_s=1000, backoff_s=0.25, max_wait_s=8)
    with pytest.raises(RegistryError):
        client(lambda r: httpx.Response(503), policy=policy, sleep=sleeps.append).resolve("acme/svc", "v1")
    assert len(sleeps) == 7
    assert sleeps[0] < 0.6 and sleeps[-1] <= 8 + 0.25 and sleeps[3] > sleeps[0]


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


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:05 GMT", now=now) == 5
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_registry_env_knobs_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.errors import ConfigError

    monkeypatch.setenv("SHIPYARD_REGISTRY_DEADLINE", "2.5")
    assert RetryPolicy.from_env().deadline_s == 2.5
    monkeypatch.setenv("SHIPYARD_REGISTRY_TIMEOUT", "fast")
    with pytest.raises(ConfigError, match="SHIPYARD_REGISTRY_TIMEOUT='fast': expected a number"):
        RetryPolicy.from_env()


# --- bearer token requests (the real flow is tests/integration/test_bearer_auth.py) -----------------

CHALLENGE = 'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:acme/svc:pull,push"'


def bearer_client(
    token_answer: httpx.Response, creds: Credentials | None, token_queries: list[dict[str, str]]
) -> RegistryClient:
    """A registry that wants ``Bearer good`` and challenges as distribution does after a token fell short."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example":
            token_queries.append(dict(request.url.params))
            return token_answer
        if request.headers.get("Authorization") == "Bearer good":
            return httpx.Response(200)
        return httpx.Response(401, headers={"WWW-Authenticate": CHALLENGE + ',error="insufficient_scope"'})

    return RegistryClient(parse_registry("reg.example/acme"), creds, transport=httpx.MockTransport(handler))


def test_token_request_carries_service_and_scope_not_the_challenge_error() -> None:
    queries: list[dict[str, str]] = []
    creds = Credentials("bot", Secret("s3cret"))
    bearer_client(httpx.Response(200, json={"access_token": "good"}), creds, queries).ping()
    assert queries == [{"service": "reg.example", "scope": "repository:acme/svc:pull,push"}]


@pytest.mark.parametrize(
    ("creds", "expected"),
    [
        (
            None,
            "registry reg.example: no credentials given, and its token service https://auth.example/token "
            "refused anonymous access (HTTP 401); set SHIPYARD_REGISTRY_USERNAME and SHIPYARD_REGISTRY_PASSWORD, "
            "or docker login reg.example",
        ),
        (
            Credentials("bot", Secret("s3cret")),
            "registry reg.example: its token service https://auth.example/token refused the credentials of 'bot' "
            "(HTTP 401)",
        ),
    ],
    ids=["anonymous", "wrong-password"],
)
def test_token_service_refusal_says_who_was_refused(creds: Credentials | None, expected: str) -> None:
    with pytest.raises(RegistryError) as refused:
        bearer_client(httpx.Response(401), creds, []).ping()
    assert str(refused.value) == expected


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (httpx.Response(200, text="<html>login</html>"), "answered HTTP 200 without a token"),
        (httpx.Response(200, json={}), "answered HTTP 200 without a token"),
        (httpx.Response(404), "answered HTTP 404"),  # a broken realm, not a credentials problem
    ],
)
def test_token_answer_without_a_token_is_a_registry_error(answer: httpx.Response, says: str) -> None:
    with pytest.raises(RegistryError) as failed:
        bearer_client(answer, Credentials("bot", Secret("s3cret")), []).ping()
    assert str(failed.value) == f"registry reg.example: its token service https://auth.example/token {says}"


def test_a_flaky_token_service_is_retried() -> None:
    token_answers = [503, 200]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            status = token_answers.pop(0)
            return httpx.Response(status, json={"token": "tok"} if status == 200 else {})
        if request.headers.get("Authorization") != "Bearer tok":
            return httpx.Response(
                401, headers={"WWW-Authenticate": 'Bearer realm="https://ghcr.io/token",service="ghcr.io"'}
            )
        return httpx.Response(200, content=MANIFEST)

    c = client(handler, credentials=Credentials("bot", Secret("s3cret")), sleep=lambda s: None)
    assert c.resolve("acme/svc", "v1") == DIGEST
    assert c.retried == 1 and token_answers == []
