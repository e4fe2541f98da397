"""Deploys that drop no request: a prober outside shipyard keeps calling a target's services through the
edge while releases roll out to it, on a second real engine in a network namespace of its own.

The target runs two services: ``real-time-audio-pipeline`` (a WebSocket stream is held open on it) and
``affective-processing-center`` (health and golden requests, 25 a second each). Every case asserts that
no request failed; what runs afterwards is read from the engine with the Docker SDK (not through
shipyard) and the deployment ledger from the registry.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest
import tenacity

from shipyard.config.catalog import load_catalog
from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from shipyard.record import ReleaseRecord, save_record
from shipyard.release.deploy.deployments import Deployment, load_deployments
from shipyard.release.gates.probes import matches
from tests.integration.conftest import IT_REGISTRY, copy_project, push_variant, shipyard, sign_as_gated
from tests.integration.second_engine import SecondEngine, second_engine
from tests.integration.test_canary import FAKE
from tests.prober import Endpoint, Prober

STREAM, REST = "real-time-audio-pipeline", "affective-processing-center"
RUN = uuid.uuid4().hex[:6]
TARGET, STOP, MIGRATE = f"gap-{RUN}", f"stop-{RUN}", f"mig-{RUN}"
CHANNEL = f"it-gap-{RUN}"
DRAIN_S, HOLD_S, READY_S = 4, 20, 20
PORTS = {TARGET: (6557, 6560), STOP: (16557, 16560), MIGRATE: (26557, 26560)}


@dataclass
class Fleet:
    root: Path
    engine: SecondEngine
    a: ReleaseRecord
    current: ReleaseRecord  # what the channel points at now


def _targets(engine: SecondEngine) -> str:
    text = ""
    for name, (stream, rest) in PORTS.items():
        text += f'\n[targets.{name}]\nprofile = "cpu"\nengine = "{engine.url}"\nservices = ["{STREAM}", "{REST}"]\n'
        text += f"drain_s = {DRAIN_S}\nhold_s = {HOLD_S}\n" if name != MIGRATE else ""
        text += 'strategy = "stop-first"\n' if name == STOP else ""
        text += f"[targets.{name}.ports]\n{STREAM} = {stream}\n{REST} = {rest}\n"
    return text


@pytest.fixture(scope="module")
def fleet(gated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:  # type: ignore[no-untyped-def]
    source, a = gated
    root = copy_project(source, tmp_path_factory.mktemp("gapless") / "proj")
    save_record(root, a)
    catalog = root / "shipyard.toml"
    catalog.write_text(re.sub(r"(?m)^ready_timeout_s = \d+$", f"ready_timeout_s = {READY_S}", catalog.read_text()))
    with second_engine(tmp_path_factory.mktemp("gap-engine"), name="shipyard-it-gap", subnet=80) as engine:
        with catalog.open("a") as out:
            out.write(_targets(engine))
        fleet = Fleet(root, engine, a, a)
        promote(fleet, a)
        yield fleet


# --- helpers -------------------------------------------------------------------------------------------


def promote(fleet: Fleet, record: ReleaseRecord) -> None:
    save_record(fleet.root, record)
    shipyard("--project", str(fleet.root), "promote", record.release, "--channel", CHANNEL, "--profile", "cpu")
    fleet.current = record


def variant(fleet: Fleet, service: str, lines: list[str], tmp: Path) -> ReleaseRecord:
    """The channel's release with ``service`` replaced by its image plus ``lines``, signed as gated."""
    base = fleet.current
    unit = base.units[f"cpu/{service}"]
    name = f"{base.release.split('-x')[0]}-x{uuid.uuid4().hex[:6]}"
    (tmp / "fake.py").write_text(FAKE)
    digest = push_variant(unit.ref, [*lines, f"LABEL org.opencontainers.image.version={name}"], tmp,
                          f"{unit.repository}:{name}")  # fmt: skip
    record = replace(base, release=name, units={**base.units, f"cpu/{service}": replace(unit, digest=digest)})
    save_record(fleet.root, record)
    sign_as_gated(record, f"cpu/{service}")
    return record


def fake(env: dict[str, str]) -> list[str]:
    return [*(f"ENV {k}={v}" for k, v in env.items()), "COPY fake.py /app/fake.py", 'CMD ["python3", "/app/fake.py"]']


def deploy(fleet: Fleet, target: str = TARGET, *extra: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return shipyard("--project", str(fleet.root), "deploy", "--target", target, "--channel", CHANNEL, *extra,
                    check=check)  # fmt: skip


def engine_runs(fleet: Fleet, target: str = TARGET) -> dict[str, list[tuple[str, str, str]]]:
    """service -> (image, container id, colour) of each of its containers (the edge aside), as the engine
    says: read with the docker CLI, not through shipyard."""
    ids = fleet.engine.docker("ps", "-aq", "--filter", f"label=io.shipyard.target={target}").stdout.split()
    if not ids:
        return {}
    form = "{{json .Image}} {{json .Id}} {{json .State.Status}} {{json .Config.Labels}}"
    found: dict[str, list[tuple[str, str, str]]] = {}
    for line in fleet.engine.docker("inspect", "--format", form, *ids).stdout.splitlines():
        image, cid, status, labels = (json.loads(part) for part in line.split(" ", 3))
        if labels.get("io.shipyard.role") == "edge":
            continue
        assert status == "running", f"{cid[:12]} ({labels.get('com.docker.compose.service')}) is {status}"
        service = labels["com.docker.compose.service"]
        found.setdefault(service, []).append((image, cid, labels.get("io.shipyard.colour", "-")))
    return {service: sorted(items) for service, items in found.items()}


def digests(runs: dict[str, list[tuple[str, str, str]]]) -> dict[str, list[str]]:
    return {service: [image for image, _, _ in items] for service, items in runs.items()}


def expected(record: ReleaseRecord) -> dict[str, list[str]]:
    return {s: [record.units[f"cpu/{s}"].digest] for s in (STREAM, REST)}


def ledger(fleet: Fleet, target: str = TARGET) -> list[dict[str, object]]:
    out = shipyard("--project", str(fleet.root), "deployments", "--target", target, "--json").stdout
    return list(json.loads(out)["entries"])


def endpoints(fleet: Fleet, target: str = TARGET) -> list[Endpoint]:
    catalog = load_catalog(fleet.root)
    stream_port, rest_port = PORTS[target]
    at = fleet.engine.address
    affect, audio = catalog.images[REST].service, catalog.images[STREAM].service
    assert affect is not None and audio is not None
    return [
        Endpoint(f"{REST} health", f"http://{at}:{rest_port}/health"),
        Endpoint(
            f"{REST} golden",
            f"http://{at}:{rest_port}{affect.golden.path}",
            "POST",
            affect.golden.request,
            lambda answer: matches(affect.golden.expect, answer),
        ),  # fmt: skip
        Endpoint(f"{STREAM} health", f"http://{at}:{stream_port}/health"),
        Endpoint(
            f"{STREAM} stream",
            f"ws://{at}:{stream_port}{audio.golden.path}",
            body=audio.golden.request,
            expect=lambda answer: matches(asdict(audio.golden)["expect"], answer),
        ),  # fmt: skip
    ]


@contextlib.contextmanager
def probed(fleet: Fleet, target: str = TARGET, *, stream_moves: bool = False) -> Iterator[Prober]:
    """The prober on the target's ports, answered by every endpoint before the block starts. Unless the
    deploy moves the stream's service (``stream_moves``: its old container goes after the drain), the
    WebSocket stream must still be open at the end. Its clients wait longer than a stop-first hold."""
    with Prober(endpoints(fleet, target), rate=25, max_s=300, timeout_s=HOLD_S + 10) as probe:
        probe.wait_answering()
        yield probe
        stream = probe.tallies[f"{STREAM} stream"]
        assert stream_moves or stream.cut_at is None, f"the stream was cut: {stream.cut}"


def entries_now(target: str = TARGET) -> list[Deployment]:
    """The target's deployment ledger as the registry has it now (in this process: polled fast)."""
    with RegistryClient(parse_registry(IT_REGISTRY)) as registry:
        return load_deployments(registry, "shipyard-it", target).entries


def step_time(entry: dict[str, object], name: str) -> float:
    """When the entry's first step ``name`` started, in epoch seconds."""
    steps = entry["steps"]
    assert isinstance(steps, list)
    at = next(s["at"] for s in steps if s["step"] == name)
    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()


# --- the cases, in order: each starts from what the one before left ---------------------------------------


def test_a_first_deploy_starts_the_edge_and_serves_through_it(fleet: Fleet) -> None:
    plan = deploy(fleet, TARGET, "--dry-run")
    assert f"{TARGET} (tcp://{fleet.engine.address}:2375): - -> {fleet.a.release}" in plan.stdout
    assert "blue-green" in plan.stdout and f"starts the edge proxy shipyard-{TARGET}-edge" in plan.stdout
    assert engine_runs(fleet) == {}
    deploy(fleet)
    assert digests(engine_runs(fleet)) == expected(fleet.a)
    (entry,) = ledger(fleet)
    assert entry["state"] == "complete" and entry["strategy"] == "blue-green"
    assert [s["step"] for s in entry["steps"]][:2] == ["pull", "ports"]  # type: ignore[index]
    with probed(fleet) as probe:  # answering through the edge, on the target's own ports
        time.sleep(0.5)
    assert not probe.failures(), probe.summary()


def test_a_release_that_changes_one_service_restarts_only_it_and_drops_nothing(fleet: Fleet, tmp_path: Path) -> None:
    before = engine_runs(fleet)
    c = variant(fleet, STREAM, ["LABEL io.shipyard.it.release=c"], tmp_path)
    promote(fleet, c)
    with probed(fleet, stream_moves=True) as probe:
        started = time.time()
        result = deploy(fleet)
        time.sleep(0.5)
    assert not probe.failures(), probe.summary()
    assert f"{TARGET}: {c.release} deployed" in result.stdout
    after = engine_runs(fleet)
    assert digests(after) == expected(c)
    assert after[REST] == before[REST]  # the same container: untouched
    assert after[STREAM][0][2] != before[STREAM][0][2]  # the other colour
    entry = ledger(fleet)[-1]
    drain = step_time(entry, "drain")
    stream = probe.tallies[f"{STREAM} stream"]
    # the stream opened before the deploy stayed open through the switch and the drain, and was ended
    # only when its old container was removed (after drain_s, since it never closed by itself)
    assert stream.cut_at is not None and stream.cut_at >= drain + DRAIN_S - 0.5, (stream.cut, drain, started)
    assert stream.answers and stream.answers[-1][0] > drain


def deploy_failing(fleet: Fleet, env: dict[str, str], tmp: Path) -> tuple[str, str, float]:
    """Deploy a release whose REST is the stand-in with ``env``, under the prober: it must exit 14, drop no
    request and leave the engine as it was (the same containers, nothing of the other colour). The
    channel goes back to the good release after; the release, stderr and seconds it took are returned."""
    before, good = engine_runs(fleet), fleet.current
    bad = variant(fleet, REST, fake(env), tmp)
    promote(fleet, bad)
    with probed(fleet) as probe:
        started = time.monotonic()
        result = deploy(fleet, check=False)
        took = time.monotonic() - started
    assert not probe.failures(), probe.summary()
    assert result.returncode == 14, result.stdout + result.stderr
    assert engine_runs(fleet) == before
    assert ledger(fleet)[-1]["state"] == "rolled-back"
    promote(fleet, good)
    return bad.release, result.stderr, took


def test_a_new_container_with_a_wrong_answer_never_reaches_a_user(fleet: Fleet, tmp_path: Path) -> None:
    release, stderr, _ = deploy_failing(fleet, {"HEALTH_STATUS": "200", "DELAY": "0", "LABEL": "anger"}, tmp_path)
    line = (
        f"{TARGET}: {release} failed (wrong answer from {REST}, on its new container); the old containers "
        "kept serving, untouched; the new ones were removed"
    )
    assert stderr.strip().splitlines() == [f"shipyard: error: {line}"], stderr


def test_a_new_container_that_never_gets_healthy_changes_nothing(fleet: Fleet, tmp_path: Path) -> None:
    _, stderr, took = deploy_failing(fleet, {"HEALTH_STATUS": "500", "DELAY": "0", "LABEL": "joy"}, tmp_path)
    assert f"failed (not healthy in {READY_S}s from {REST}, on its new container)" in stderr
    assert took < READY_S + 30  # the service's own ready_timeout_s bounds the wait


def test_a_rollback_to_the_first_release_drops_nothing(fleet: Fleet) -> None:
    promote(fleet, fleet.a)
    with probed(fleet, stream_moves=True) as probe:
        deploy(fleet)
    assert not probe.failures(), probe.summary()
    assert digests(engine_runs(fleet)) == expected(fleet.a)


def test_a_deploy_killed_halfway_is_finished_by_the_same_command(fleet: Fleet, tmp_path: Path) -> None:
    d = variant(fleet, REST, ["LABEL io.shipyard.it.release=d"], tmp_path)
    promote(fleet, d)
    argv = [sys.executable, "-m", "shipyard", "--project", str(fleet.root), "deploy", "--target", TARGET]
    env = {**os.environ, "SHIPYARD_REGISTRY": IT_REGISTRY}
    count = len(ledger(fleet))
    with probed(fleet) as probe:
        proc = subprocess.Popen([*argv, "--channel", CHANNEL], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            for attempt in tenacity.Retrying(stop=tenacity.stop_after_delay(120), wait=tenacity.wait_fixed(0.2)):
                with attempt:  # the new colour is started: killed between start and switch
                    entries = entries_now()
                    assert len(entries) == count + 1
                    assert any(s["step"] == "start" for s in entries[-1].steps)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        assert ledger(fleet)[-1]["state"] == "in-progress"
        again = deploy(fleet)
    assert not probe.failures(), probe.summary()
    assert "finishes the deploy of" in again.stdout, again.stdout
    assert digests(engine_runs(fleet)) == expected(d)  # one container per service: nothing of the other colour
    assert [e["state"] for e in ledger(fleet)][-2:] == ["interrupted", "complete"]


def test_two_deploys_at_once_one_deploys_the_other_refuses(fleet: Fleet, tmp_path: Path) -> None:
    e = variant(fleet, REST, ["LABEL io.shipyard.it.release=e"], tmp_path)
    promote(fleet, e)
    count = len(ledger(fleet))
    argv = [sys.executable, "-m", "shipyard", "--project", str(fleet.root), "deploy", "--target", TARGET]
    env = {**os.environ, "SHIPYARD_REGISTRY": IT_REGISTRY}
    first = subprocess.Popen([*argv, "--channel", CHANNEL], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)  # fmt: skip
    try:
        for attempt in tenacity.Retrying(stop=tenacity.stop_after_delay(120), wait=tenacity.wait_fixed(0.1)):
            with attempt:
                assert len(entries_now()) == count + 1  # the first one holds the lock and is deploying
        second = deploy(fleet, check=False)
        waiting = subprocess.Popen([*argv, "--channel", CHANNEL, "--lock-wait", "120"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        out, err = first.communicate(timeout=300)
        waited, _ = waiting.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, out + err
    assert second.returncode == 17, second.stdout + second.stderr
    assert re.match(rf"shipyard: error: target {TARGET}: .* is deploying it \(pid {first.pid} on ", second.stderr)
    assert waiting.returncode == 0 and "nothing to change" in waited, waited
    entries = ledger(fleet)
    assert len(entries) == count + 1 and entries[-1]["state"] == "complete"
    assert digests(engine_runs(fleet)) == expected(e)


def test_a_target_whose_containers_all_stopped_comes_back_on_the_next_deploy(fleet: Fleet) -> None:
    """As after a host restart that brought nothing back: the services and the edge stopped, the edge's
    volume holding the config it served before."""
    ids = fleet.engine.docker("ps", "-q", "--filter", f"label=io.shipyard.target={TARGET}").stdout.split()
    fleet.engine.docker("stop", *ids)
    result = deploy(fleet)
    assert f"{TARGET}: {fleet.current.release} deployed" in result.stdout, result.stdout
    assert digests(engine_runs(fleet)) == expected(fleet.current)
    with probed(fleet) as probe:  # through the edge, on the config this deploy wrote
        time.sleep(0.5)
    assert not probe.failures(), probe.summary()


def test_stop_first_holds_requests_instead_of_failing_them(fleet: Fleet, tmp_path: Path) -> None:
    deploy(fleet, STOP)  # the target's first deploy (release e)
    f = variant(fleet, REST, ["LABEL io.shipyard.it.release=f"], tmp_path)
    promote(fleet, f)
    plan = deploy(fleet, STOP, "--dry-run")
    assert "stop-first" in plan.stdout
    with probed(fleet, STOP) as probe:
        deploy(fleet, STOP)
        time.sleep(0.3)
    assert not probe.failures(), probe.summary()
    held = probe.tallies[f"{REST} health"]
    assert 0.2 < held.slowest_s <= HOLD_S, probe.summary()  # latency, not errors, for the restart
    assert digests(engine_runs(fleet, STOP)) == expected(f)
    steps = [s["step"] for s in ledger(fleet, STOP)[-1]["steps"]]  # type: ignore[union-attr]
    assert steps.index("stop") < steps.index("start") < steps.index("switch")


def test_a_target_deployed_in_place_moves_to_blue_green_on_its_next_deploy(fleet: Fleet, tmp_path: Path) -> None:
    old = copy_project(fleet.root, tmp_path / "in-place")
    catalog = old / "shipyard.toml"
    catalog.write_text(
        catalog.read_text().replace(f"[targets.{MIGRATE}]\n", f'[targets.{MIGRATE}]\nstrategy = "in-place"\n')
    )
    shipyard("--project", str(old), "deploy", "--target", MIGRATE, "--channel", CHANNEL)
    assert {c[2] for items in engine_runs(fleet, MIGRATE).values() for c in items} == {"-"}  # in place: no colour
    plan = deploy(fleet, MIGRATE, "--dry-run")
    assert "migrates from in-place to blue-green" in plan.stdout, plan.stdout
    deploy(fleet, MIGRATE)
    runs = engine_runs(fleet, MIGRATE)
    assert digests(runs) == expected(fleet.current) and {c[2] for items in runs.values() for c in items} == {"blue"}
    with probed(fleet, MIGRATE) as probe:
        time.sleep(0.3)
    assert not probe.failures(), probe.summary()
    assert [e["strategy"] for e in ledger(fleet, MIGRATE)] == ["in-place", "blue-green"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ('strategy = "rolling"', "targets.bad.strategy: expected one of blue-green, stop-first, in-place"),
        ("drain_s = 0", "targets.bad.drain_s: expected seconds above 0"),
        (
            'proxy_image = "docker.io/library/haproxy:2.6"',
            "targets.bad.proxy_image: 'docker.io/library/haproxy:2.6' is not pinned by digest",
        ),  # fmt: skip
    ],
)
def test_bad_deploy_settings_are_one_line_each(fleet: Fleet, tmp_path: Path, setting: str, message: str) -> None:
    root = copy_project(fleet.root, tmp_path / "bad")
    with (root / "shipyard.toml").open("a") as out:
        out.write(f'\n[targets.bad]\nprofile = "cpu"\nengine = "{fleet.engine.url}"\n{setting}\n')
    result = shipyard("--project", str(root), "deploy", "--target", "bad", "--channel", CHANNEL, check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert message in line, line
    assert engine_runs(fleet, "bad") == {}


def test_a_port_the_edge_cannot_bind_is_refused_before_anything_changes(fleet: Fleet, tmp_path: Path) -> None:
    root = copy_project(fleet.root, tmp_path / "taken")
    with (root / "shipyard.toml").open("a") as out:
        out.write(
            f'\n[targets.taken-{RUN}]\nprofile = "cpu"\nengine = "{fleet.engine.url}"\nservices = ["{REST}"]\n'
            f"[targets.taken-{RUN}.ports]\n{REST} = 36560\n"
        )
    holder = subprocess.Popen(  # another program on the target's host listens on that port
        ["nsenter", f"--net=/var/run/netns/{fleet.engine.netns}", sys.executable, "-m", "http.server", "36560",
         "--bind", "0.0.0.0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for attempt in tenacity.Retrying(stop=tenacity.stop_after_delay(20), wait=tenacity.wait_fixed(0.1)):
            with attempt:
                subprocess.run(
                    ["curl", "-sf", f"http://{fleet.engine.address}:36560/"], check=True, capture_output=True
                )
        result = shipyard("--project", str(root), "deploy", "--target", f"taken-{RUN}", "--channel", CHANNEL,
                          check=False)  # fmt: skip
    finally:
        holder.terminate()
        holder.wait(timeout=10)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"port 36560 ({REST}) is taken" in line and "nothing was changed" in line, line
    assert engine_runs(fleet, f"taken-{RUN}") == {}
    assert entries_now(f"taken-{RUN}") == []
