"""canary against the real engine: a good release passes; broken variants fail with the right reason."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import socket
import subprocess
import threading
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from shipyard.record import load_record, save_record
from shipyard.release.gates.canary import LABEL
from tests.integration.conftest import push_variant, shipyard

UNIT = "cpu/affective-processing-center"
# A stand-in server: /health per HEALTH_STATUS, every POST answers LABEL after DELAY seconds.
FAKE = """
import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        self._send(int(os.environ["HEALTH_STATUS"]), {"status": "ok" if os.environ["HEALTH_STATUS"] == "200" else "no"})
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(float(os.environ["DELAY"]))
        self._send(200, {"label": os.environ["LABEL"]})
    def log_message(self, *args): pass
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""
VARIANTS = {
    # name: (env of the stand-in, ready timeout, expected reason prefix)
    "never-healthy": ({"HEALTH_STATUS": "500", "DELAY": "0", "LABEL": "joy"}, 8, "not healthy by the deadline"),
    "wrong-answer": ({"HEALTH_STATUS": "200", "DELAY": "0", "LABEL": "anger"}, 60, "wrong answer"),
    "too-slow": ({"HEALTH_STATUS": "200", "DELAY": "0.4", "LABEL": "joy"}, 60, "SLO missed: p95"),
}


def leftovers() -> list[object]:
    client = docker.from_env()
    try:
        return list(client.containers.list(all=True, filters={"label": LABEL}))
    finally:
        client.close()


def test_good_release_passes_and_records_latency(built) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = built
    result = shipyard("--project", str(root), "canary", record.release, "--profile", "cpu")
    assert "canary: 3 service(s) healthy" in result.stdout, result.stdout
    saved = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    for key in ("cpu/model-ops-coordinator", "cpu/real-time-audio-pipeline", UNIT):
        canary = saved.units[key].verdicts.canary
        assert canary is not None and canary.passed and canary.requests == 20 and canary.error_rate == 0
        assert canary.p50_ms and canary.p95_ms and canary.slo_p95_ms
        assert 0 < canary.p50_ms <= canary.p95_ms <= canary.slo_p95_ms
    assert not leftovers()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_broken_variant_fails_with_its_reason(built, variant: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = built
    env, ready_timeout, reason = VARIANTS[variant]
    good = record.units[UNIT]
    (tmp_path / "fake.py").write_text(FAKE)
    lines = ["COPY fake.py /app/fake.py", *(f"ENV {k}={v}" for k, v in env.items()), 'CMD ["python3", "/app/fake.py"]']
    repository = good.repository.replace("/cpu/", "/variants/") + "-" + variant
    digest = push_variant(good.ref, lines, tmp_path, f"{repository}:{good.tag}")
    expect = copy.deepcopy(good.expect)
    expect["service"]["ready_timeout_s"] = ready_timeout
    unit = replace(good, repository=repository, digest=digest, expect=expect, verdicts={})
    broken = replace(record, release=f"{record.release}-{variant}", units={UNIT: unit})
    save_record(root, broken)
    result = shipyard("--project", str(root), "canary", broken.release, check=False)
    assert result.returncode == 12, result.stdout + result.stderr
    assert f"{UNIT}: {reason}" in result.stderr, result.stderr
    verdict = load_record(root / ".shipyard" / "releases" / f"{broken.release}.json").units[UNIT].verdicts.canary
    assert verdict is not None and verdict.passed is False and verdict.reason.startswith(reason)
    assert not leftovers(), "the canary left a container behind"


def test_hardening_of_the_canary_container(built) -> None:  # type: ignore[no-untyped-def]
    from shipyard.release.engine import endpoint
    from shipyard.release.gates.canary import Candidate, Engine, running

    _, record, _ = built
    client = docker.from_env()
    try:
        candidate = Candidate(UNIT, record.units[UNIT], "hardening-check")
        with running(Engine(client, endpoint()), candidate) as (container, _):
            host = container.attrs["HostConfig"]
            assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
            assert "no-new-privileges" in host["SecurityOpt"][0]
            assert host["Memory"] == 512 * 1024**2 and host["PidsLimit"] == 256
            assert all(b["HostIp"] == "127.0.0.1" for b in host["PortBindings"]["6560/tcp"])
            assert container.attrs["Config"]["User"] == "10001:10001"
        assert not leftovers()
    finally:
        client.close()


def test_leftovers_of_a_killed_run_are_removed_and_a_running_canary_is_not(built) -> None:  # type: ignore[no-untyped-def]
    from shipyard.release.gates.canary import OWNER_LABEL

    root, record, _ = built
    dead = subprocess.Popen(["true"])
    dead.wait()
    client = docker.from_env()
    try:
        ref = record.units[UNIT].ref
        killed = {LABEL: "killed-run", OWNER_LABEL: f"{socket.gethostname()}:{dead.pid}"}
        alive = {LABEL: "running-run", OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"}
        client.containers.create(ref, labels=killed)
        concurrent = client.containers.create(ref, labels=alive)
        try:
            result = shipyard("--project", str(root), "canary", record.release)
            assert "removed 1 canary container(s) left by an earlier run" in result.stdout
            concurrent.reload()  # still there: another canary's container is not a leftover
        finally:
            concurrent.remove(force=True)
    finally:
        client.close()
    assert not leftovers()
    assert json.loads((root / ".shipyard" / "releases" / f"{record.release}.json").read_text())


class EngineOverTcp:
    """The local engine's socket relayed to tcp://127.0.0.2:PORT: to the canary, a remote engine whose
    host is 127.0.0.2 (published ports are then reached at 127.0.0.2, not 127.0.0.1)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.2", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            engine = socket.socket(socket.AF_UNIX)
            with self.lock:
                self.sockets += [client, engine]
            engine.connect("/var/run/docker.sock")
            done = threading.Barrier(2, action=lambda c=client, e=engine: (c.close(), e.close()))
            for a, b in ((client, engine), (engine, client)):
                threading.Thread(target=self._pipe, args=(a, b, done), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            with contextlib.suppress(threading.BrokenBarrierError):
                done.wait(timeout=30)  # both directions ended: the pair is closed (by the barrier's action)

    def close(self) -> None:
        self.server.close()
        with self.lock:
            for sock in self.sockets:  # whatever a direction still held open when the test ended
                sock.close()


@pytest.mark.parametrize("via", ["DOCKER_HOST", "docker context"])
def test_canary_on_a_remote_engine(gated, tmp_path: Path, via: str) -> None:  # type: ignore[no-untyped-def]
    root, record = gated
    engine = EngineOverTcp()
    try:
        url = f"tcp://127.0.0.2:{engine.port}"
        env = {"DOCKER_CONFIG": str(tmp_path / "docker")}
        if via == "DOCKER_HOST":
            env["DOCKER_HOST"] = url
        else:
            cli = {**os.environ, **env}
            cli.pop("DOCKER_HOST", None)
            subprocess.run(["docker", "context", "create", "mainpc-it", "--docker", f"host={url}"], env=cli, check=True)
            subprocess.run(["docker", "context", "use", "mainpc-it"], env=cli, check=True, capture_output=True)
        assert "DOCKER_HOST" not in os.environ  # the context case relies on it
        result = shipyard("--project", str(root), "canary", record.release, "--profile", "cpu", env=env)
        assert f"engine {url}: probing the services at 127.0.0.2" in result.stdout, result.stdout
        assert "service(s) healthy, answering right and within their SLO" in result.stdout
    finally:
        engine.close()


def test_a_gpu_canary_on_an_engine_without_nvidia_is_refused_before_anything_starts(built) -> None:  # type: ignore[no-untyped-def]
    import time

    from shipyard.release.engine import endpoint

    root, record, _ = built
    client = docker.from_env()
    try:
        if "nvidia" in (client.info().get("Runtimes") or {}):
            pytest.skip("this engine has the NVIDIA runtime: the refusal cannot be seen here")
        since = int(time.time()) - 1
        result = shipyard(
            "--project", str(root), "canary", record.release, "--profile", "pc2", check=False
        )
        until = int(time.time()) + 1
        events = client.events(since=since, until=until, decode=True, filters={"type": "container", "event": "create"})
        created = [e for e in events if e["Actor"]["Attributes"].get("io.shipyard.unit", "").startswith("pc2/")]
    finally:
        client.close()
    assert result.returncode == 4, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("shipyard: error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(
        f"shipyard: error: canary pc2 (a GPU profile): the engine at {endpoint().url} has no NVIDIA runtime (runtimes: "
    ), result.stderr
    assert errors[0].endswith(
        "); install the NVIDIA Container Toolkit there and run `nvidia-ctk runtime configure --runtime=docker`, "
        "then restart dockerd"
    ), result.stderr
    assert ": starting " not in result.stdout, result.stdout
    assert created == [], "a pc2 canary container was created"
    assert not leftovers()
    saved = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    assert not [k for k, u in saved.units.items() if u.profile == "pc2" and u.verdicts.canary is not None]
