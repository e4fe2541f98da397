"""Bearer-token auth end to end: a real ``docker-registry`` with ``auth: token`` and our token service.

The GHCR / Docker Hub flow, for real: 401 with ``WWW-Authenticate: Bearer realm=…,service=…,scope=…``,
Basic credentials to the realm, a signed JWT back, the request again with ``Authorization: Bearer``;
a new token for every new scope (another repository, or push after pull).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import tenacity

from shipyard.config.registry import parse_registry
from shipyard.errors import RegistryError
from shipyard.oci.client import RegistryClient
from shipyard.oci.credentials import Credentials, Secret
from shipyard.oci.reference import RegistryNamespace
from shipyard.release.channels.ledger import Entry, Ledger, ledger_repository, load_ledger, save_ledger
from tests.integration.conftest import shipyard
from tests.tokenservice import Account, SigningKey, TokenService

PORT = 5002
SERVICE, ISSUER = "shipyard-bearer-it", "shipyard-test-token-issuer"
NAMESPACE = "ns"
USER, READER = "releaser", "auditor"
# recognisable fake personal access tokens, new every run: found anywhere in output means leaked
TOKEN = "sytest_pat_" + secrets.token_hex(16)
READER_TOKEN = "sytest_pat_" + secrets.token_hex(16)
WRONG_TOKEN = "sytest_pat_" + secrets.token_hex(16)  # a refused password must not be echoed either


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenService]:
    signing = SigningKey.create(tmp_path_factory.mktemp("token-signing"))
    accounts = {USER: Account(TOKEN), READER: Account(READER_TOKEN, frozenset({"pull"}))}
    with TokenService(signing, issuer=ISSUER, service=SERVICE, accounts=accounts) as service:
        yield service


@pytest.fixture(scope="module")
def bearer_registry(tmp_path_factory: pytest.TempPathFactory, tokens: TokenService) -> Iterator[RegistryNamespace]:
    """A second docker-registry on 127.0.0.1:5002 that trusts only tokens signed by ``tokens``."""
    work = tmp_path_factory.mktemp("bearer-registry")
    config = {  # JSON is YAML; no quoting surprises for the realm URL
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(work / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{PORT}"},
        "auth": {
            "token": {
                "realm": tokens.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(tokens.signing.bundle),
            }
        },
    }
    (work / "config.yml").write_text(json.dumps(config))
    log = work / "registry.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(work / "config.yml")], stdout=sink, stderr=subprocess.STDOUT
        )

    def ready() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        answer = httpx.get(f"http://127.0.0.1:{PORT}/v2/", timeout=1)
        # our registry, not another one that holds the port: its challenge names our token service
        assert answer.status_code == 401, answer.status_code
        assert f'realm="{tokens.realm}"' in answer.headers.get("WWW-Authenticate", ""), answer.headers

    try:
        tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((httpx.TransportError, AssertionError)),
            stop=tenacity.stop_after_delay(20),
            wait=tenacity.wait_fixed(0.05),
            reraise=True,
        )(ready)
        yield parse_registry(f"127.0.0.1:{PORT}/{NAMESPACE}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def client(bearer_registry: RegistryNamespace) -> Iterator[Callable[..., RegistryClient]]:
    """``client(user, password)`` (or ``client()``: anonymous); every client made is closed after the test."""
    made: list[RegistryClient] = []

    def make(user: str | None = None, password: str | None = None) -> RegistryClient:
        creds = Credentials(user, Secret(password)) if user is not None and password is not None else None
        made.append(RegistryClient(bearer_registry, creds))
        return made[-1]

    yield make
    for each in made:
        each.close()


def ledger(channel: str, release: str) -> Ledger:
    entry = Entry(
        action="promote",
        release=release,
        digests={"cpu/svc": "sha256:" + "1" * 64},
        previous={"cpu/svc": None},
        by="bearer-it",
        state="complete",
    )
    return Ledger(channel, [entry])


def assert_no_secret(texts: list[str], tokens: TokenService) -> None:
    """No password token and no bearer token the service issued, in any of ``texts``.

    Call it before any assertion whose failure message would show those texts.
    """
    secrets_ = [TOKEN, READER_TOKEN, WRONG_TOKEN, *tokens.tokens]
    for text in texts:
        if any(s in text for s in secrets_):
            for s in secrets_:
                text = text.replace(s, "[LEAKED]")
            raise AssertionError(f"a credential or bearer token appears in: {text[:300]!r}")


def _actions(scope: str) -> tuple[str, frozenset[str]]:
    """``repository:NAME:a,b`` → (NAME, {a, b})."""
    rest = scope.removeprefix("repository:")
    name, _, actions = rest.rpartition(":")
    return name, frozenset(actions.split(","))


def exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def test_ping_gets_a_token_with_basic_credentials(client: Callable[..., RegistryClient], tokens: TokenService) -> None:
    start = len(tokens.issued)
    client(USER, TOKEN).ping()
    asked = tokens.issued[start:]
    assert [(i.username, i.status) for i in asked] == [(USER, 200)]
    assert asked[0].query["service"] == [SERVICE] and asked[0].scopes == []
    # and the registry really wants a token: the same request without one is refused
    assert httpx.get(f"http://127.0.0.1:{PORT}/v2/", timeout=5).status_code == 401


def test_ledger_artifact_round_trip_asks_a_token_per_scope(
    client: Callable[..., RegistryClient], tokens: TokenService
) -> None:
    repository = ledger_repository(NAMESPACE)
    written = ledger("bearer-it", "20250111-0badcafe")
    start = len(tokens.issued)
    registry = client(USER, TOKEN)
    digest = save_ledger(registry, NAMESPACE, written)
    assert registry.head_digest(repository, "bearer-it") == digest
    found = registry.manifest(repository, "bearer-it")
    assert found is not None and found.digest == digest
    assert found.json["artifactType"] == "application/vnd.shipyard.ledger.v1+json"
    # a new client (another machine) reads what the first one wrote
    assert load_ledger(client(USER, TOKEN), NAMESPACE, "bearer-it") == written
    # distribution lists a scope's actions in no fixed order (push,pull or pull,push)
    scopes = {_actions(scope) for issued in tokens.issued[start:] for scope in issued.scopes}
    assert scopes == {(repository, frozenset({"pull"})), (repository, frozenset({"pull", "push"}))}
    assert all(issued.status == 200 for issued in tokens.issued[start:])
    # nothing the registry sent back (the challenge's error=…) is forwarded to the token service
    assert {tuple(sorted(issued.query)) for issued in tokens.issued[start:]} == {("scope", "service")}


def test_a_token_signed_by_an_untrusted_key_is_refused(
    bearer_registry: RegistryNamespace, tokens: TokenService, tmp_path: Path
) -> None:
    """The registry really checks the signature against its rootcertbundle (else this suite proves little)."""
    accounts = {USER: Account(TOKEN)}
    with TokenService(SigningKey.create(tmp_path), issuer=ISSUER, service=SERVICE, accounts=accounts) as impostor:
        forged = httpx.get(impostor.realm, params={"service": SERVICE}, auth=(USER, TOKEN), timeout=5).json()["token"]
        genuine = httpx.get(tokens.realm, params={"service": SERVICE}, auth=(USER, TOKEN), timeout=5).json()["token"]
    ping = f"http://127.0.0.1:{PORT}/v2/"
    assert httpx.get(ping, headers={"Authorization": f"Bearer {genuine}"}, timeout=5).status_code == 200
    refused = httpx.get(ping, headers={"Authorization": f"Bearer {forged}"}, timeout=5)
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["WWW-Authenticate"]


def test_one_client_alternates_repositories(client: Callable[..., RegistryClient]) -> None:
    """A token for one repository is refused for the next (insufficient_scope): a new one is fetched, both ways."""
    registry = client(USER, TOKEN)
    first, second = ledger("alt", "20250111-aaaaaaaa"), ledger("alt", "20250111-bbbbbbbb")
    save_ledger(registry, NAMESPACE, first)
    save_ledger(registry, f"{NAMESPACE}/other", second)
    assert load_ledger(registry, NAMESPACE, "alt") == first
    assert load_ledger(registry, f"{NAMESPACE}/other", "alt") == second
    assert load_ledger(registry, NAMESPACE, "alt") == first
    registry.ping()


def test_pull_only_account_reads_but_cannot_push(client: Callable[..., RegistryClient], tokens: TokenService) -> None:
    save_ledger(client(USER, TOKEN), NAMESPACE, ledger("read-only", "20250111-cccccccc"))
    reader = client(READER, READER_TOKEN)
    assert load_ledger(reader, NAMESPACE, "read-only").entries[0].release == "20250111-cccccccc"
    with pytest.raises(RegistryError) as refused:
        save_ledger(reader, NAMESPACE, ledger("read-only", "20250111-dddddddd"))
    assert_no_secret(exception_texts(refused.value), tokens)
    message = str(refused.value)
    assert "\n" not in message and f"127.0.0.1:{PORT}" in message and "access denied" in message
    assert load_ledger(reader, NAMESPACE, "read-only").entries[0].release == "20250111-cccccccc"


@pytest.mark.parametrize(
    ("user", "password"),
    [(USER, WRONG_TOKEN), ("nobody", TOKEN), (READER, TOKEN)],
    ids=["wrong-password", "unknown-user", "another-users-token"],  # never the password in a test id
)
def test_wrong_credentials_are_one_line_naming_the_registry(
    client: Callable[..., RegistryClient], tokens: TokenService, user: str, password: str
) -> None:
    start = len(tokens.issued)
    registry = client(user, password)
    with pytest.raises(RegistryError) as refused:
        registry.ping()
    assert_no_secret([*exception_texts(refused.value), repr(registry), repr(registry._auth._credentials)], tokens)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"registry 127.0.0.1:{PORT}") and "refused the credentials" in message, message
    assert [issued.status for issued in tokens.issued[start:]] == [401]


def test_anonymous_is_told_credentials_are_needed(client: Callable[..., RegistryClient], tokens: TokenService) -> None:
    with pytest.raises(RegistryError) as refused:
        client().ping()
    assert_no_secret(exception_texts(refused.value), tokens)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"registry 127.0.0.1:{PORT}"), message
    assert "no credentials" in message and "anonymous" in message, message
    with pytest.raises(RegistryError, match="no credentials"):
        load_ledger(client(), NAMESPACE, "bearer-it")


def test_anonymous_token_without_access_is_denied(client: Callable[..., RegistryClient], tokens: TokenService) -> None:
    """Docker Hub's way: anonymous tokens exist but grant nothing on a private repository."""
    tokens.anonymous = True
    try:
        registry = client()
        registry.ping()  # /v2/ needs a valid token, not any access
        with pytest.raises(RegistryError, match=r"access denied \(HTTP 401\)"):
            load_ledger(registry, NAMESPACE, "bearer-it")
    finally:
        tokens.anonymous = False


def test_cli_history_with_a_token(
    bearer_registry: RegistryNamespace, client: Callable[..., RegistryClient], tokens: TokenService, tmp_path: Path
) -> None:
    written = ledger("cli-it", "20250111-eeeeeeee")
    save_ledger(client(USER, TOKEN), NAMESPACE, written)
    env = {
        "SHIPYARD_REGISTRY_USERNAME": USER,
        "SHIPYARD_REGISTRY_PASSWORD": TOKEN,
        "DOCKER_CONFIG": str(tmp_path / "docker"),  # no docker login of this machine leaks in
    }
    argv = ("history", "--channel", "cli-it", "--registry", str(bearer_registry))
    # check=False, and the leak check first: a failure message must not show a leaked token
    as_json = shipyard(*argv, "--json", env=env, check=False)
    table = shipyard(*argv, env=env, check=False)
    wrong = shipyard(*argv, env={**env, "SHIPYARD_REGISTRY_PASSWORD": WRONG_TOKEN}, check=False)
    assert_no_secret([r.stdout + r.stderr for r in (as_json, table, wrong)], tokens)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["entries"][0]["release"] == written.entries[0].release
    assert table.returncode == 0 and "20250111-eeeeeeee" in table.stdout, table.stderr
    assert wrong.returncode == 5, wrong.stderr
    assert wrong.stderr.startswith(f"shipyard: error: registry 127.0.0.1:{PORT}"), wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr
