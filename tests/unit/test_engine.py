"""Which engine the canary runs on, and whether it can run a GPU profile's containers."""

from __future__ import annotations

import pytest

from shipyard.errors import EngineError
from shipyard.release.engine import endpoint, gpu_device_requests, has_gpu, require_nvidia_runtime


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


class FakeEngine:
    """A Docker SDK client whose ``info()`` shows ``runtimes``; any other use of it fails the test."""

    def __init__(self, runtimes: dict[str, object]) -> None:
        self.runtimes = runtimes
        self.calls: list[str] = []

    def info(self) -> dict[str, object]:
        self.calls.append("info")
        return {"Runtimes": self.runtimes, "ServerVersion": "27.5.1"}

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"client.{name} used: only info() may be")


RUNC = {"path": "runc"}


@pytest.mark.parametrize(
    ("hardware", "gpu"),
    [
        ({"gpu": "RTX 3060", "vram_gb": "12"}, True),
        ({"gpu": "none"}, False),
        ({"gpu": " None "}, False),
        ({"gpu": ""}, False),
        ({"vram_gb": "12"}, False),
        ({}, False),
    ],
)
def test_a_profile_has_a_gpu_when_its_hardware_names_one(hardware: dict[str, str], gpu: bool) -> None:
    assert has_gpu(hardware) is gpu


def test_gpu_containers_ask_for_every_nvidia_gpu() -> None:
    from docker.types import DeviceRequest

    requests = gpu_device_requests()
    assert requests == [DeviceRequest(driver="nvidia", count=-1, capabilities=[["gpu"]])]
    assert requests[0] == {"Driver": "nvidia", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    assert gpu_device_requests() is not gpu_device_requests()  # a fresh list: no caller changes another's


def test_an_engine_without_the_nvidia_runtime_is_one_line_naming_who_and_the_fix() -> None:
    client = FakeEngine({"runc": RUNC, "io.containerd.runc.v2": RUNC})
    with pytest.raises(EngineError) as error:
        require_nvidia_runtime(client, "canary pc2 (a GPU profile)", "unix:///var/run/docker.sock")
    assert str(error.value) == (
        "canary pc2 (a GPU profile): the engine at unix:///var/run/docker.sock has no NVIDIA runtime "
        "(runtimes: io.containerd.runc.v2, runc); install the NVIDIA Container Toolkit there and run "
        "`nvidia-ctk runtime configure --runtime=docker`, then restart dockerd"
    )
    assert error.value.exit_code == 4
    assert client.calls == ["info"]


def test_an_engine_that_lists_no_runtimes_says_none() -> None:
    with pytest.raises(
        EngineError,
        match=r"^target mainpc: the engine at ssh://me@mainpc has no NVIDIA runtime "
        r"\(runtimes: none\); install the NVIDIA Container Toolkit there",
    ):
        require_nvidia_runtime(FakeEngine({}), "target mainpc", "ssh://me@mainpc")


def test_an_engine_with_the_nvidia_runtime_passes() -> None:
    client = FakeEngine({"runc": RUNC, "nvidia": {"path": "nvidia-container-runtime"}})
    require_nvidia_runtime(client, "canary pc2 (a GPU profile)", "unix:///var/run/docker.sock")
    assert client.calls == ["info"]


def test_an_engine_whose_info_fails_is_one_line() -> None:
    import docker

    class Refusing(FakeEngine):
        def info(self) -> dict[str, object]:
            raise docker.errors.APIError("500 Server Error: Internal Server Error\nmore detail")

    with pytest.raises(EngineError) as error:
        require_nvidia_runtime(Refusing({}), "target mainpc", "ssh://me@mainpc")
    message = str(error.value)
    assert message.startswith("target mainpc: cannot read the runtimes of the engine at ssh://me@mainpc (")
    assert "\n" not in message
