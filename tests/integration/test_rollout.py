"""Rollout to two real engines: this host's dockerd (the canary target) and a second dockerd in a
network namespace of its own (another machine to shipyard: tcp://10.78.0.2:2375, services at 10.78.0.2).

What runs is read from each engine (the containers' image IDs, which the containerd image store makes
the image index digest), never from shipyard's output; the ledgers are read from the registry.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import docker
import pytest
import tenacity

from shipyard.record import ReleaseRecord, save_record
from tests.integration.conftest import IT_REGISTRY, copy_project, push_variant, registry_digest, shipyard, sign_as_gated
from tests.integration.second_engine import SecondEngine, second_engine
from tests.integration.test_canary import FAKE

SERVICES = ("affective-processing-center", "model-ops-coordinator")
CHANGED = "affective-processing-center"  # the service releases B and C change
RUN = uuid.uuid4().hex[:6]  # targets (so ledgers and Compose projects) of this test session only
MAIN, EDGE = f"main-{RUN}", f"edge-{RUN}"
CHANNEL = f"it-rollout-{RUN}"


@dataclass(frozen=True)
class Fleet:
    root: Path
    edge: SecondEngine
    a: ReleaseRecord


def _targets(edge: SecondEngine) -> str:
    services = json.dumps(list(SERVICES))
    # main publishes on ports of its own: the Quick start's `local` target may run on this host
    return (
        f'\n[targets.{MAIN}]\nprofile = "cpu"\nengine = "unix:///var/run/docker.sock"\nservices = {services}\n'
        f"canary = true\n[targets.{MAIN}.ports]\naffective-processing-center = 26560\nmodel-ops-coordinator = 28212\n"
        f'\n[targets.{EDGE}]\nprofile = "cpu"\nengine = "{edge.url}"\nservices = {services}\n'
        f'\n[targets.locked-{RUN}]\nprofile = "cpu"\nengine = "{edge.url}"\nservices = {services}\n'
        f'secrets = ["SHIPYARD_IT_TOKEN"]\n[targets.locked-{RUN}.ports]\naffective-processing-center = 36560\n'
        f"model-ops-coordinator = 38212\n"
        f'\n[targets.dead-{RUN}]\nprofile = "cpu"\nengine = "tcp://{edge.address}:2399"\nservices = {services}\n'
        f'\n[targets.gpu-{RUN}]\nprofile = "pc2"\nengine = "{edge.url}"\nservices = {services}\n'
    )


@pytest.fixture(scope="module")
def fleet(gated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    source, a = gated
    root = copy_project(source, tmp_path_factory.mktemp("fleet") / "proj")
    save_record(root, a)  # release A as gated (a later test may have rebuilt the session's copy of it)
    with second_engine(tmp_path_factory.mktemp("edge"), name="shipyard-it-fleet", subnet=78) as edge:
        with (root / "shipyard.toml").open("a") as catalog:
            catalog.write(_targets(edge))
        fleet = Fleet(root, edge, a)
        promote(fleet, a)  # the channel every test rolls out starts on release A
        try:
            yield fleet
        finally:
            remove_target("unix:///var/run/docker.sock", MAIN)


def running(url: str, target: str) -> dict[str, list[str]]:
    """service -> image IDs of its containers on the engine at ``url`` (the edge proxy aside), as the engine
    says: one per service, of whichever colour serves it."""
    client = docker.DockerClient(base_url=url)
    try:
        found: dict[str, list[str]] = {}
        for c in client.containers.list(all=True, filters={"label": f"io.shipyard.target={target}"}):
            if c.labels.get("io.shipyard.role") == "edge":
                continue
            assert c.status == "running", f"{target}: {c.name} is {c.status}"
            found.setdefault(c.labels["com.docker.compose.service"], []).append(c.attrs["Image"])
        return found
    finally:
        client.close()


def remove_target(url: str, target: str) -> None:
    """Every container and volume a test's target left on the engine at ``url`` (its edge included)."""
    client = docker.DockerClient(base_url=url)
    try:
        for c in client.containers.list(all=True, filters={"label": f"io.shipyard.target={target}"}):
            c.remove(force=True, v=True)
        for volume in client.volumes.list(filters={"label": f"io.shipyard.target={target}"}):
            volume.remove(force=True)
    finally:
        client.close()


def channel_digests() -> dict[str, list[str]]:
    return {s: [str(registry_digest(f"{IT_REGISTRY}/cpu/{s}", CHANNEL))] for s in SERVICES}


def digests_of(record: ReleaseRecord) -> dict[str, list[str]]:
    return {s: [record.units[f"cpu/{s}"].digest] for s in SERVICES}


def ledger(root: Path, target: str) -> list[dict[str, object]]:
    out = shipyard("--project", str(root), "deployments", "--target", target, "--json").stdout
    return list(json.loads(out)["entries"])


def variant(fleet: Fleet, name: str, lines: list[str], tmp: Path) -> ReleaseRecord:
    """Release A with CHANGED replaced by ``lines`` on top of A's image, saved as release ``name``."""
    good = fleet.a.units[f"cpu/{CHANGED}"]
    (tmp / "fake.py").write_text(FAKE)
    label = f"LABEL org.opencontainers.image.version={name}"
    digest = push_variant(good.ref, [*lines, label], tmp, f"{good.repository}:{name}")
    record = replace(fleet.a, release=name, units={**fleet.a.units, f"cpu/{CHANGED}": replace(good, digest=digest)})
    save_record(fleet.root, record)
    sign_as_gated(record, f"cpu/{CHANGED}")  # it passed the gates: the live check is what catches it
    return record


def rollout(fleet: Fleet, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return shipyard("--project", str(fleet.root), "rollout", "--channel", CHANNEL, *extra, check=check)


def promote(fleet: Fleet, record: ReleaseRecord) -> None:
    shipyard("--project", str(fleet.root), "promote", record.release, "--channel", CHANNEL, "--profile", "cpu")


def test_a_release_rolls_out_to_both_engines(fleet: Fleet) -> None:
    plan = rollout(fleet, "--target", MAIN, "--target", EDGE, "--dry-run")
    assert "create affective-processing-center: (none) -> affective-processing-center@" in plan.stdout
    assert running("unix:///var/run/docker.sock", MAIN) == {}  # a dry run changes nothing
    result = rollout(fleet, "--target", MAIN, "--target", EDGE)
    for target in (MAIN, EDGE):  # the table: target, before, after, health, p95, seconds, outcome
        assert re.search(
            rf"(?m)^{target}\s+-\s+{fleet.a.release}\s+healthy\s+[\d.]+ ms\s+[\d.]+\s+deployed$", result.stdout
        )
    assert running("unix:///var/run/docker.sock", MAIN) == channel_digests() == digests_of(fleet.a)
    assert running(fleet.edge.url, EDGE) == digests_of(fleet.a)
    assert [e["state"] for e in ledger(fleet.root, MAIN)] == ["complete"]
    again = rollout(fleet, "--target", MAIN, "--target", EDGE)
    assert f"{MAIN}: already runs {fleet.a.release} (2 service(s)); nothing to change" in again.stdout
    assert len(ledger(fleet.root, EDGE)) == 1  # a no-op writes nothing


def test_a_wrong_answer_on_the_canary_target_rolls_it_back_and_stops(fleet: Fleet, tmp_path: Path) -> None:
    env = {"HEALTH_STATUS": "200", "DELAY": "0", "LABEL": "anger"}
    b = variant(fleet, f"{fleet.a.release}-b", [*(f"ENV {k}={v}" for k, v in env.items()), "COPY fake.py /app/fake.py",
                                               'CMD ["python3", "/app/fake.py"]'], tmp_path)  # fmt: skip
    promote(fleet, b)
    result = rollout(fleet, "--target", MAIN, "--target", EDGE, check=False)
    assert result.returncode == 14, result.stdout + result.stderr
    line = (
        f"{MAIN}: {b.release} failed (wrong answer from {CHANGED}, on its new container); the old containers kept "
        "serving, untouched; the new ones were removed; rollout stopped, 1 target(s) not reached"
    )
    assert result.stderr.strip().splitlines() == [f"shipyard: error: {line}"], result.stderr
    assert running("unix:///var/run/docker.sock", MAIN) == digests_of(fleet.a)
    assert running(fleet.edge.url, EDGE) == digests_of(fleet.a)  # not reached: untouched
    assert [e["state"] for e in ledger(fleet.root, MAIN)] == ["complete", "rolled-back"]
    assert len(ledger(fleet.root, EDGE)) == 1


def test_the_next_good_release_reaches_both_and_nothing_old_is_left(fleet: Fleet, tmp_path: Path) -> None:
    c = variant(fleet, f"{fleet.a.release}-c", ["LABEL io.shipyard.it.release=c"], tmp_path)
    assert c.units[f"cpu/{CHANGED}"].digest != fleet.a.units[f"cpu/{CHANGED}"].digest
    promote(fleet, c)
    result = rollout(fleet, "--target", MAIN, "--target", EDGE)
    assert "rollout of channel" in result.stdout and "2 target(s) on it" in result.stdout
    for url, target in (("unix:///var/run/docker.sock", MAIN), (fleet.edge.url, EDGE)):
        assert running(url, target) == digests_of(c) == channel_digests(), target
    assert [e["state"] for e in ledger(fleet.root, EDGE)] == ["complete", "complete"]


@pytest.mark.parametrize(
    ("target", "code", "message"),
    [
        (f"locked-{RUN}", 2, f"target locked-{RUN}: secret SHIPYARD_IT_TOKEN not set in this environment"),
        (f"dead-{RUN}", 4, f"target dead-{RUN}: engine tcp://10.78.0.2:2399 not reachable"),
        (f"gpu-{RUN}", 4, f"target gpu-{RUN}: the engine at tcp://10.78.0.2:2375 has no NVIDIA runtime"),
        ("nope", 2, "--target: unknown target 'nope'"),
    ],
)
def test_bad_targets_are_refused_before_anything_changes(fleet: Fleet, target: str, code: int, message: str) -> None:
    before = running("unix:///var/run/docker.sock", MAIN), len(ledger(fleet.root, MAIN))
    result = rollout(fleet, "--target", MAIN, "--target", target, check=False)
    assert result.returncode == code, result.stdout + result.stderr
    assert result.stderr.startswith(f"shipyard: error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert (running("unix:///var/run/docker.sock", MAIN), len(ledger(fleet.root, MAIN))) == before


def test_a_deploy_killed_halfway_is_finished_by_running_it_again(fleet: Fleet) -> None:
    argv = [sys.executable, "-m", "shipyard", "--project", str(fleet.root), "deploy", "--target", EDGE, fleet.a.release]
    env = {**os.environ, "SHIPYARD_REGISTRY": IT_REGISTRY}
    before = len(ledger(fleet.root, EDGE))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        for attempt in tenacity.Retrying(stop=tenacity.stop_after_delay(120), wait=tenacity.wait_fixed(0.2)):
            with attempt:  # the ledger says in-progress: the engine is being changed
                assert len(ledger(fleet.root, EDGE)) == before + 1
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert ledger(fleet.root, EDGE)[-1]["state"] == "in-progress"
    again = shipyard("--project", str(fleet.root), "deploy", "--target", EDGE, fleet.a.release)
    assert "finishes the deploy of" in again.stdout, again.stdout
    assert running(fleet.edge.url, EDGE) == digests_of(fleet.a)
    assert [e["state"] for e in ledger(fleet.root, EDGE)][-2:] == ["interrupted", "complete"]


def test_the_compose_project_and_ledger_hold_no_secret_value(fleet: Fleet) -> None:
    token = "it-secret-" + uuid.uuid4().hex
    result = shipyard(
        "--project", str(fleet.root), "deploy", "--target", f"locked-{RUN}", fleet.a.release,
        env={"SHIPYARD_IT_TOKEN": token},
    )  # fmt: skip
    assert token not in result.stdout + result.stderr
    files = sorted((fleet.root / ".shipyard" / "deploy" / f"locked-{RUN}").glob("*-blue.yaml"))
    assert len(files) == 2, files  # one Compose project per service (and colour)
    for written in (f.read_text() for f in files):
        assert "${SHIPYARD_IT_TOKEN:?SHIPYARD_IT_TOKEN must be set}" in written and token not in written
    assert token not in json.dumps(ledger(fleet.root, f"locked-{RUN}"))
    client = docker.DockerClient(base_url=fleet.edge.url)
    try:
        labels = [f"io.shipyard.target=locked-{RUN}", "io.shipyard.colour"]
        containers = client.containers.list(filters={"label": labels})
        assert containers and all(f"SHIPYARD_IT_TOKEN={token}" in c.attrs["Config"]["Env"] for c in containers)
    finally:
        client.close()
