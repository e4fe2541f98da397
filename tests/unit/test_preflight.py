from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx
import pytest

from shipyard.config.registry import parse_registry
from shipyard.errors import CommandFailed, EngineError, RegistryError
from shipyard.events import Event
from shipyard.oci.client import RegistryClient
from shipyard.oci.credentials import Credentials, Secret
from shipyard.preflight import check_engine, check_registry
from shipyard.runner import Completed, Runner

CONTAINERD = {"ServerVersion": "26.1.5", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}


class Engine(Runner):
    def __init__(self, info: dict[str, Any] | None, buildx: bool = True) -> None:
        super().__init__()
        self.info, self.buildx = info, buildx

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:  # type: ignore[override]
        if argv[1] == "info":
            if self.info is None:
                raise CommandFailed(list(argv), 1, "Cannot connect to the Docker daemon")
            return Completed(list(argv), 0, json.dumps(self.info))
        if not self.buildx:
            raise CommandFailed(list(argv), 1, "docker: 'buildx' is not a docker command.")
        return Completed(list(argv), 0, "github.com/docker/buildx v0.13.1")


def test_all_good_says_what_it_found() -> None:
    events: list[Event] = []
    check_engine(Engine(CONTAINERD), events.append)
    assert events[0].message == "engine 26.1.5 (containerd image store), github.com/docker/buildx v0.13.1"


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        (Engine(None), "Docker engine not reachable (docker info failed): start it with `nox -s up`"),
        (Engine({"ServerErrors": ["Cannot connect"]}), "Docker engine not reachable: Cannot connect"),
        (Engine({"DriverStatus": [["Backing Filesystem", "extfs"]]}), "the engine uses the classic image store"),
        (Engine(CONTAINERD, buildx=False), "docker buildx is missing: install the buildx plugin"),
    ],
)
def test_each_failure_is_one_actionable_line(engine: Engine, message: str) -> None:
    with pytest.raises(EngineError) as err:
        check_engine(engine, lambda e: None)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_engine_not_reachable_names_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    with pytest.raises(EngineError, match=r"docker info failed; DOCKER_HOST=unix:///nonexistent.sock\)"):
        check_engine(Engine(None), lambda e: None)


@pytest.mark.parametrize(
    ("registry", "status", "hint"),
    [
        ("localhost:5003/team", 401, "expected credentials it accepts: SHIPYARD_REGISTRY_USERNAME and"),
        ("ghcr.io/acme", 401, "expected credentials it accepts: GITHUB_TOKEN (a token with write:packages), "),
        ("localhost:5000/shipyard", 404, "for the local registry run `nox -s up`"),
        ("registry.example.com/acme", 404, "check --registry (or SHIPYARD_REGISTRY) and the network"),
    ],
)
def test_registry_failure_says_what_to_do_about_it(registry: str, status: int, hint: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"WWW-Authenticate": 'Basic realm="r"'})

    target = parse_registry(registry)
    creds = Credentials("releaser", Secret("wrong"))
    client = RegistryClient(target, creds, transport=httpx.MockTransport(answer))
    with pytest.raises(RegistryError) as err:
        check_registry(client, lambda e: None)
    assert hint in str(err.value) and "\n" not in str(err.value), str(err.value)
