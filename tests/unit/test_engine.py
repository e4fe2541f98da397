from __future__ import annotations

import pytest

from shipyard.errors import EngineError
from shipyard.release.gates.engine import endpoint


def test_a_local_engine_publishes_and_is_probed_on_loopback_only() -> None:
    where = endpoint({"DOCKER_HOST": "unix:///var/run/docker.sock"})
    assert (where.probe_host, where.bind, where.is_remote) == ("127.0.0.1", "127.0.0.1", False)
    assert endpoint({"DOCKER_HOST": "tcp://localhost:2375"}).bind == "127.0.0.1"


@pytest.mark.parametrize("url", ["ssh://me@mainpc", "tcp://mainpc:2376", "ssh://mainpc:2222"])
def test_a_remote_engine_is_probed_at_its_host(url: str) -> None:
    where = endpoint({"DOCKER_HOST": url})
    assert (where.probe_host, where.bind, where.is_remote) == ("mainpc", "0.0.0.0", True)


def test_another_probe_address_can_be_named() -> None:
    where = endpoint({"DOCKER_HOST": "ssh://me@mainpc", "SHIPYARD_CANARY_HOST": "10.8.0.4"})
    assert where.probe_host == "10.8.0.4" and where.url == "ssh://me@mainpc"


def test_an_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(EngineError, match=r"DOCKER_HOST='fd://3': expected unix://, tcp:// or ssh://"):
        endpoint({"DOCKER_HOST": "fd://3"})


def test_without_docker_host_the_current_context_is_used(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    import json

    name = "mainpc"
    meta = tmp_path / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": "ssh://me@mainpc"}}})
    )
    (tmp_path / "config.json").write_text(json.dumps({"currentContext": name}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    where = endpoint({})
    assert (where.url, where.context, where.probe_host) == ("ssh://me@mainpc", "mainpc", "mainpc")
