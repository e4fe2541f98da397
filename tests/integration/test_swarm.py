"""Swarm targets on a real single-node swarm (a second dockerd in its own network namespace, IPv6 on).

A stack of the release's service, two replicas, ``start-first`` updates. This kernel has no IPVS, so
the routing mesh cannot answer here: the target publishes in ``host`` mode, each task on a port the
engine picks, and the live check asks every task once. The engine has IPv6, as an ordinary host does:
it publishes each task on ``0.0.0.0`` and on ``[::]``, and (an engine that allocates the two families'
ports apart, Docker < 27, once its IPv4 ports ran ahead) on two different port numbers. Everything is
read back from the engine.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from shipyard.record import ReleaseRecord, save_record
from tests.integration.conftest import copy_project, push_variant, shipyard, sign_as_gated
from tests.integration.second_engine import SecondEngine, second_engine

SERVICE = "affective-processing-center"
RUN = uuid.uuid4().hex[:6]
TARGET = f"fleet-{RUN}"
V4, V6 = "0.0.0.0", "::"


@dataclass(frozen=True)
class Swarm:
    root: Path
    engine: SecondEngine
    a: ReleaseRecord


@pytest.fixture(scope="module")
def swarm(gated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swarm]:  # type: ignore[no-untyped-def]
    source, a = gated
    root = copy_project(source, tmp_path_factory.mktemp("swarm") / "proj")
    save_record(root, a)  # release A as gated (a later test may have rebuilt the session's copy of it)
    profile = root / "profiles" / "cpu.json"
    profile.write_text(json.dumps({**json.loads(profile.read_text()), "runtime": {"replicas": 2}}))
    engine_dir = tmp_path_factory.mktemp("swarm-engine")
    with second_engine(engine_dir, name="shipyard-it-swarm", subnet=79, ipv6=True) as engine:
        engine.swarm_init()
        ipv4_only(engine, a.units[f"cpu/{SERVICE}"].ref)
        with (root / "shipyard.toml").open("a") as catalog:
            catalog.write(
                f'\n[targets.{TARGET}]\nprofile = "cpu"\nengine = "{engine.url}"\nmode = "swarm"\n'
                f'publish = "host"\nservices = ["{SERVICE}"]\n'
            )
        yield Swarm(root, engine, a)


def ipv4_only(engine: SecondEngine, ref: str) -> None:
    """A container published on ``0.0.0.0`` only (a host runs other things too), serving nothing on it: the
    engine's IPv4 ports run one ahead of its IPv6 ones where it allocates them apart (Docker < 27)."""
    engine.docker("pull", "--quiet", ref, timeout=300)
    argv = ["run", "--detach", "--name", "ipv4-only", "--publish", f"{V4}::6560", "--entrypoint", "python3", ref]
    engine.docker(*argv, "-c", "import time; time.sleep(86400)")


def published(engine: SecondEngine) -> dict[str, dict[str, int]]:
    """Each running task's container: the host port the engine bound for each host address (docker SDK)."""
    client = docker.DockerClient(base_url=engine.url)
    try:
        containers = client.containers.list(
            filters={"label": f"com.docker.swarm.service.name=shipyard-{TARGET}_{SERVICE}"}
        )
        return {
            c.name: {
                b["HostIp"]: int(b["HostPort"])
                for bindings in c.attrs["NetworkSettings"]["Ports"].values()
                for b in bindings or []
            }
            for c in containers
        }
    finally:
        client.close()


def separate_allocation(engine: SecondEngine) -> bool:
    """Docker < 27 picks a port for IPv4 and one for IPv6 apart; later ones one number for both."""
    version = engine.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    return int(version.split(".")[0]) < 27


def published_twice(engine: SecondEngine) -> list[int]:
    """Assert the engine published each of the two tasks on 0.0.0.0 and [::] (different ports where it
    allocates them apart), both answering /health; their IPv4 ports."""
    tasks = published(engine)
    assert len(tasks) == 2 and all(sorted(ports) == [V4, V6] for ports in tasks.values()), tasks
    if separate_allocation(engine):
        assert all(ports[V4] != ports[V6] for ports in tasks.values()), tasks
    for ports in tasks.values():
        for address, port in ((engine.address, ports[V4]), (f"[{engine.address6}]", ports[V6])):
            response = httpx.get(f"http://{address}:{port}/health", timeout=10, trust_env=False)
            assert response.status_code == 200, (address, port, response.text)
    return sorted(ports[V4] for ports in tasks.values())


def checked_ports(engine: SecondEngine, stdout: str) -> list[int]:
    """The ports shipyard's live check asked the service on, and found answering right."""
    found = re.findall(rf"{TARGET}: {SERVICE} at {re.escape(engine.address)}:(\d+): ok\b", stdout)
    return sorted(int(port) for port in found)


def service_state(engine: SecondEngine) -> tuple[dict[str, Any], list[str]]:
    """The stack's service as Swarm has it (spec, update status), and the image IDs of its running containers."""
    client = docker.DockerClient(base_url=engine.url)
    try:
        (service,) = client.services.list(filters={"name": f"shipyard-{TARGET}_{SERVICE}"})
        containers = client.containers.list(filters={"label": f"com.docker.swarm.service.name={service.name}"})
        return service.attrs, sorted(c.attrs["Image"] for c in containers)
    finally:
        client.close()


def variant(swarm: Swarm, name: str, lines: list[str], tmp: Path) -> ReleaseRecord:
    good = swarm.a.units[f"cpu/{SERVICE}"]
    digest = push_variant(
        good.ref, [*lines, f"LABEL org.opencontainers.image.version={name}"], tmp, f"{good.repository}:{name}"
    )
    record = replace(swarm.a, release=name, units={**swarm.a.units, f"cpu/{SERVICE}": replace(good, digest=digest)})
    save_record(swarm.root, record)
    sign_as_gated(record, f"cpu/{SERVICE}")  # it passed the gates: the live check is what catches it
    return record


def deploy(swarm: Swarm, release: str, check: bool = True):  # type: ignore[no-untyped-def]
    return shipyard("--project", str(swarm.root), "deploy", "--target", TARGET, release, check=check)


def test_a_stack_converges_with_start_first_updates(swarm: Swarm, tmp_path: Path) -> None:
    first = deploy(swarm, swarm.a.release)
    assert f"{TARGET}: {swarm.a.release} deployed, 1 service(s) healthy and answering" in first.stdout, first.stdout
    assert checked_ports(swarm.engine, first.stdout) == published_twice(swarm.engine), first.stdout  # once per task
    spec, images = service_state(swarm.engine)
    digest_a = swarm.a.units[f"cpu/{SERVICE}"].digest
    assert images == [digest_a, digest_a]  # both replicas
    update = spec["Spec"]["UpdateConfig"]
    assert update["Order"] == "start-first" and update["FailureAction"] == "rollback"

    c = variant(swarm, f"{swarm.a.release}-c", ["LABEL io.shipyard.it.release=c"], tmp_path)
    result = deploy(swarm, c.release)
    assert re.search(rf"update +{SERVICE}: {SERVICE}@\w+ -> {SERVICE}@\w+", result.stdout), result.stdout
    assert checked_ports(swarm.engine, result.stdout) == published_twice(swarm.engine), result.stdout
    spec, images = service_state(swarm.engine)
    assert images == [c.units[f"cpu/{SERVICE}"].digest] * 2
    assert spec["UpdateStatus"]["State"] == "completed"


def test_an_update_swarm_rolls_back_is_reported_and_the_target_stays_good(swarm: Swarm, tmp_path: Path) -> None:
    before, good_images = service_state(swarm.engine)
    crash = variant(swarm, f"{swarm.a.release}-crash", ['CMD ["python3", "-c", "raise SystemExit(3)"]'], tmp_path)
    result = deploy(swarm, crash.release, check=False)
    assert result.returncode == 14, result.stdout + result.stderr
    assert f"{TARGET}: {crash.release} failed (docker stack deploy: Swarm rolled {SERVICE} back: " in result.stderr
    assert f"rolled back to {swarm.a.release}-c (healthy)" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    spec, images = service_state(swarm.engine)
    assert images == good_images  # what ran before the bad update
    assert (
        spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
        == before["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    )
    entries = json.loads(shipyard("--project", str(swarm.root), "deployments", "--target", TARGET, "--json").stdout)
    assert [e["state"] for e in entries["entries"]] == ["complete", "complete", "rolled-back"]
