from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shipyard.build.buildx import docker_login
from shipyard.config.registry import parse_registry
from shipyard.errors import ConfigError
from shipyard.oci.credentials import Secret, credentials_for
from shipyard.runner import Completed, Runner

TOKEN = "ghp_FAKEtoken1234567890"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GITHUB_TOKEN", "GITHUB_ACTOR", "SHIPYARD_REGISTRY_USERNAME", "SHIPYARD_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def test_ghcr_takes_github_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    creds = credentials_for(parse_registry("ghcr.io/acme"))
    assert creds is not None and creds.username == "octocat" and creds.password.reveal() == TOKEN
    assert TOKEN not in repr(creds) and TOKEN not in str(creds.password)


def test_ghcr_without_any_credentials_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"^GITHUB_TOKEN is not set and `docker login ghcr.io` was not done"):
        credentials_for(parse_registry("ghcr.io/acme"))


def test_local_registry_is_anonymous_and_docker_login_is_read(tmp_path: Path) -> None:
    assert credentials_for(parse_registry(None)) is None
    (tmp_path / "docker").mkdir()
    auth = base64.b64encode(b"bot:pa55").decode()
    (tmp_path / "docker" / "config.json").write_text(json.dumps({"auths": {"ghcr.io": {"auth": auth}}}))
    creds = credentials_for(parse_registry("ghcr.io/acme"))
    assert creds is not None and (creds.username, creds.password) == ("bot", Secret("pa55"))


def test_docker_login_passes_the_secret_by_stdin_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[list[str], Any]] = []
    echoed: list[str] = []

    class Recorder(Runner):
        def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:  # type: ignore[override]
            echoed.append(" ".join(argv))
            seen.append((list(argv), kwargs.get("stdin")))
            return Completed(list(argv), 0, "")

    monkeypatch.setenv("SHIPYARD_REGISTRY_USERNAME", "ci")
    monkeypatch.setenv("SHIPYARD_REGISTRY_PASSWORD", TOKEN)
    target = parse_registry("registry.example.com/team")
    creds = credentials_for(target)
    assert creds is not None
    docker_login(Recorder(), target, creds)
    argv, stdin = seen[0]
    assert argv == ["docker", "login", "registry.example.com", "--username", "ci", "--password-stdin"]
    assert stdin == TOKEN and all(TOKEN not in line for line in echoed)
