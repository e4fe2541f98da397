"""The second Docker engine of second_engine.py, against the real host engine and local registry.

It pulls by digest through its relays, publishes ports the host reaches at ``engine.address``, is not
the host engine, and runs a single-node swarm (host-mode ports; ingress only where the kernel has IPVS).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import httpx
import pytest
import tenacity

from tests.integration.conftest import MANIFEST_TYPES
from tests.integration.second_engine import SecondEngine, ipvs_available, second_engine

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nsenter") is None, reason="a second engine needs root and nsenter"
)

REGISTRY = "localhost:5000"
# A Python service with a plain-HTTP GET /health and no model to mount (the others refuse to start
# without theirs); the first with a release tag is the probe image.
PROBE_REPOSITORIES = ("shipyard-it/cpu/real-time-audio-pipeline", "shipyard/cpu/real-time-audio-pipeline")
RELEASE_TAG = re.compile(r"\d{8}-[0-9a-f]{8}")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondEngine]:
    with second_engine(tmp_path_factory.mktemp("second-engine")) as started:
        yield started


@pytest.fixture(scope="module")
def probe(engine: SecondEngine) -> tuple[str, int]:
    """``localhost:5000/<repository>@sha256:…`` of a service image, pulled into the second engine, and its port."""
    ref = probe_reference()
    engine.docker("pull", "--quiet", ref, timeout=300)
    ports = json.loads(engine.docker("image", "inspect", "--format", "{{json .Config.ExposedPorts}}", ref).stdout)
    return ref, int(next(iter(ports)).split("/")[0])


@pytest.fixture(scope="module")
def swarm(engine: SecondEngine) -> SecondEngine:
    engine.swarm_init()
    return engine


def probe_reference() -> str:
    for repository in PROBE_REPOSITORIES:
        tags = httpx.get(f"http://{REGISTRY}/v2/{repository}/tags/list", timeout=30).json().get("tags") or []
        for tag in sorted((t for t in tags if RELEASE_TAG.fullmatch(t)), reverse=True):
            url = f"http://{REGISTRY}/v2/{repository}/manifests/{tag}"
            response = httpx.head(url, headers={"Accept": MANIFEST_TYPES}, timeout=30)
            if response.status_code == 200:
                return f"{REGISTRY}/{repository}@{response.headers['Docker-Content-Digest']}"
    pytest.fail(f"no image with a release tag in {REGISTRY}/{{{','.join(PROBE_REPOSITORIES)}}}")


def retrying(seconds: float) -> tenacity.Retrying:
    """Retry until ``seconds`` have passed, polling fast at first; re-raises the last assertion."""
    return tenacity.Retrying(
        stop=tenacity.stop_after_delay(seconds), wait=tenacity.wait_exponential(multiplier=0.05, max=0.5), reraise=True
    )


def wait_healthy(address: str, port: int, seconds: float = 30) -> httpx.Response:
    """GET /health at ``address:port`` from the host until it answers 200."""
    for attempt in retrying(seconds):
        with attempt:
            response = httpx.get(f"http://{address}:{port}/health", timeout=2, trust_env=False)
            assert response.status_code == 200, response.text
    return response


def running_containers(engine: SecondEngine, service: str) -> list[str]:
    out = engine.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").stdout
    return out.split()


def test_pulls_by_digest_and_publishes_to_the_host(engine: SecondEngine, probe: tuple[str, int]) -> None:
    ref, port = probe
    host_id = subprocess.run(["docker", "info", "--format", "{{.ID}}"], capture_output=True, text=True, check=True)
    assert engine.docker("info", "--format", "{{.ID}}").stdout.strip() != host_id.stdout.strip()
    # the containerd image store, as on the host engine: the image ID is the digest pulled
    image_id = engine.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    assert image_id == ref.rsplit("@", 1)[1]

    engine.docker("run", "-d", "--name", "probe", "-p", f"{port}:{port}", ref)
    try:
        assert wait_healthy(engine.address, port).json()["status"] == "ok"
    finally:
        engine.docker("rm", "-f", "probe")
    assert engine.docker("ps", "-aq").stdout.strip() == ""


def test_swarm_service_publishes_in_host_mode(swarm: SecondEngine, probe: tuple[str, int]) -> None:
    """What deploy tests can use here: ``mode=host`` ports answer, and a stop-first update replaces the task.

    A start-first update cannot: the new task would need the port the old one holds, so on one node it
    stays Pending with "host-mode port already in use on 1 node" (asserted last, so a change shows).
    """
    ref, port = probe
    published = port + 1
    swarm.docker("service", "create", "--detach", "--name", "web", "--publish",
                 f"mode=host,published={published},target={port}", ref)  # fmt: skip
    try:
        wait_healthy(swarm.address, published)
        (before,) = running_containers(swarm, "web")
        # --detach and polling: the CLI would wait out the 5 s the update monitors the new task for
        swarm.docker("service", "update", "--detach", "--update-order", "stop-first", "--env-add", "REV=2", "web")
        for attempt in retrying(30):
            with attempt:
                assert running_containers(swarm, "web") not in ([], [before])
        wait_healthy(swarm.address, published)

        swarm.docker("service", "update", "--detach", "--update-order", "start-first", "--env-add", "REV=3", "web")
        for attempt in retrying(20):
            with attempt:
                tasks = swarm.docker("service", "ps", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}", "web")
                assert "host-mode port already in use" in tasks.stdout, tasks.stdout
        wait_healthy(swarm.address, published)  # the old task still serves
    finally:
        swarm.docker("service", "rm", "web")


@pytest.mark.skipif(not ipvs_available(), reason="no IPVS in this kernel (CONFIG_IP_VS): no swarm routing mesh")
def test_swarm_ingress_start_first_update(swarm: SecondEngine, probe: tuple[str, int]) -> None:
    ref, port = probe
    published = port + 2
    swarm.docker("service", "create", "--detach", "--name", "mesh", "--publish", f"{published}:{port}", ref)
    try:
        wait_healthy(swarm.address, published)
        swarm.docker("service", "update", "--quiet", "--update-order", "start-first", "--env-add", "REV=2", "mesh")
        wait_healthy(swarm.address, published)
        assert len(running_containers(swarm, "mesh")) == 1
    finally:
        swarm.docker("service", "rm", "mesh")
