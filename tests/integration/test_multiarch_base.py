"""The local base for linux/amd64 + linux/arm64 on the real engine and registry: one index, both platforms.

The arm64 rootfs is made under qemu-user (binfmt_misc, scripts/up.sh), about five minutes on an x86_64
host the first time; after that the registry has it and ``ensure`` only looks it up.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.build.base import LocalBases
from shipyard.build.contexts import ELF_MACHINE, prepare_tools
from shipyard.config.registry import parse_registry
from shipyard.events import Event
from shipyard.oci.client import INDEX_TYPES, RegistryClient
from shipyard.runner import Runner
from tests.integration.conftest import IT_REGISTRY

# the integration tests' own registry namespace: the end-to-end tests' multi-platform builds use this same
# base, so the registry holds it once and the five minutes are paid once per machine
ARM_REGISTRY = IT_REGISTRY
NAME = "debian-bookworm-python"
PLATFORMS = ("linux/amd64", "linux/arm64")


@pytest.fixture(scope="module")
def multiarch_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalBases, str]]:
    target = parse_registry(ARM_REGISTRY)
    events: list[Event] = []
    with RegistryClient(target) as registry:
        bases = LocalBases(target, registry, Runner(), tmp_path_factory.mktemp("cache"), events.append)
        yield bases, bases.ensure(NAME, platforms=PLATFORMS)


def test_the_base_is_one_index_over_both_platforms(multiarch_base: tuple[LocalBases, str]) -> None:
    bases, ref = multiarch_base
    repository, _, digest = ref.removeprefix("localhost:5000/").partition("@")
    assert repository == f"{IT_REGISTRY.split('/', 1)[1]}/bases/{NAME}" and digest.startswith("sha256:")
    response = httpx.get(
        f"http://localhost:5000/v2/{repository}/manifests/{digest}", headers={"Accept": ", ".join(INDEX_TYPES)}
    )
    assert response.status_code == 200 and response.headers["Content-Type"] in INDEX_TYPES
    listed = {(m["platform"]["os"], m["platform"]["architecture"]) for m in response.json()["manifests"]}
    assert listed == {("linux", "amd64"), ("linux", "arm64")}
    runner = Runner()
    bases.runner = runner
    assert bases.ensure(NAME, platforms=PLATFORMS) == ref and runner.history == []  # present: nothing rebuilt


@pytest.mark.parametrize(("platform", "machine"), [("linux/arm64", "aarch64"), ("linux/amd64", "x86_64")])
def test_each_platform_of_the_index_runs_its_own_python(
    multiarch_base: tuple[LocalBases, str], platform: str, machine: str
) -> None:
    _, ref = multiarch_base
    argv = ["docker", "run", "--rm", "--platform", platform, ref, "python3", "-c"]
    result = subprocess.run(
        [*argv, "import platform; print(platform.machine())"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == machine


def test_tools_for_both_platforms_hold_each_arch_own_tini(tmp_path: Path) -> None:
    tools = prepare_tools(tmp_path, PLATFORMS, runner=Runner())
    assert sorted(p.relative_to(tools).as_posix() for p in tools.rglob("*") if p.is_file()) == [
        "linux_amd64/tini-static",
        "linux_arm64/tini-static",
    ]
    for platform, arch in (("linux_amd64", "x86_64"), ("linux_arm64", "aarch64")):
        header = (tools / platform / "tini-static").read_bytes()[:20]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_MACHINE[arch]
    if shutil.which("file"):  # what file(1) says too, where it is installed
        described = subprocess.run(
            ["file", "-b", str(tools / "linux_arm64" / "tini-static")], capture_output=True, text=True, check=True
        ).stdout
        assert "ARM aarch64" in described and "statically linked" in described
