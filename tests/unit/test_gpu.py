"""The canary of a GPU profile: its containers get the GPUs, and an engine without the NVIDIA runtime is
refused before any container is touched. Fake Docker clients; the real engine is in the integration tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import EngineError
from shipyard.record import ReleaseRecord, UnitRecord, write_atomic
from shipyard.release.engine import Endpoint, gpu_device_requests
from shipyard.release.gates import canary

LOCAL = Endpoint("unix:///var/run/docker.sock", "", "127.0.0.1", "127.0.0.1")
SERVICE = {
    "port": 6560,
    "protocol": "http",
    "health": "/health",
    "ready_timeout_s": 60,
    "slo_p95_ms": 250.0,
    "golden": {"path": "/predict", "method": "POST", "request": {}, "expect": {}},
}


def unit(profile: str) -> UnitRecord:
    return UnitRecord(
        profile=profile,
        image="affective-processing-center",
        kind="service",
        platform="linux/amd64",
        repository=f"localhost:5000/acme/{profile}/affective-processing-center",
        tag="20250111-aaaaaaaa",
        digest="sha256:" + "a" * 64,
        size=1,
        parent="",
        duration_s=1.0,
        steps=1,
        cache_hits=0,
        expect={"service": SERVICE, "canary": {"memory": "768m", "cpus": 1.5, "pids": 256, "requests": 30}},
    )


class FakeContainer:
    ports = {"6560/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32768"}]}

    def __init__(self) -> None:
        self.removed = False

    def start(self) -> None:
        pass

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeContainers:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create(self, image: str, **options: Any) -> FakeContainer:
        self.created.append(options)
        return FakeContainer()


class FakeClient:
    def __init__(self) -> None:
        self.containers = FakeContainers()


@pytest.mark.parametrize("gpu", [True, False])
def test_a_gpu_canary_container_gets_every_nvidia_gpu_and_a_cpu_one_none(gpu: bool) -> None:
    client = FakeClient()
    with canary.running(canary.Engine(client, LOCAL), canary.Candidate("pc2/x", unit("pc2"), "r"), gpu=gpu) as (_, url):
        assert url == "http://127.0.0.1:32768"
    (options,) = client.containers.created
    if gpu:
        assert options["device_requests"] == gpu_device_requests()
    else:
        assert "device_requests" not in options
    assert options["read_only"] is True and options["cap_drop"] == ["ALL"]  # hardened all the same


class NoNvidia:
    """An engine without the NVIDIA runtime; anything but ``info()`` (listing, removing, creating
    containers) fails the test."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def info(self) -> dict[str, Any]:
        self.calls.append("info")
        return {"Runtimes": {"runc": {"path": "runc"}}}

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"client.{name} used before the NVIDIA runtime was checked")


def release(tmp_path: Path) -> Path:
    record = ReleaseRecord(
        release="20250111-aaaaaaaa",
        revision="aaaaaaaa",
        created="2025-01-11T12:00:00Z",
        registry="localhost:5000/acme",
        units={"cpu/affective-processing-center": unit("cpu"), "pc2/affective-processing-center": unit("pc2")},
    )
    path = tmp_path / "20250111-aaaaaaaa.json"
    write_atomic(path, record.to_json())
    return path


def test_the_canary_of_a_gpu_profile_is_refused_before_any_container_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = NoNvidia()
    monkeypatch.setattr(canary, "endpoint", lambda: LOCAL)
    monkeypatch.setattr(canary, "connect", lambda where: client)
    path = release(tmp_path)
    before = path.read_text()
    with pytest.raises(EngineError) as error:
        canary.CanaryGate("pc2", gpu_profiles={"pc2"}).run(path, lambda event: None)
    assert str(error.value) == (
        "canary pc2 (a GPU profile): the engine at unix:///var/run/docker.sock has no NVIDIA runtime "
        "(runtimes: runc); install the NVIDIA Container Toolkit there and run "
        "`nvidia-ctk runtime configure --runtime=docker`, then restart dockerd"
    )
    assert client.calls == ["info"]
    assert path.read_text() == before  # no verdict recorded: the canary did not run


def test_the_canary_of_a_cpu_profile_does_not_ask_the_engine_for_runtimes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class CpuOnly(NoNvidia):
        def info(self) -> dict[str, Any]:
            raise AssertionError("info() asked for a profile without a GPU")

    class Stop(Exception):
        pass

    def stop(client: Any, emit: Any) -> int:
        raise Stop  # the canary went on as today, to the leftovers; the rest is the integration tests'

    monkeypatch.setattr(canary, "endpoint", lambda: LOCAL)
    monkeypatch.setattr(canary, "connect", lambda where: CpuOnly())
    monkeypatch.setattr(canary, "remove_leftovers", stop)
    with pytest.raises(Stop):
        canary.CanaryGate("cpu", gpu_profiles={"pc2"}).run(release(tmp_path), lambda event: None)
