"""canary against the real engine: a good release passes; broken variants fail with the right reason."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import docker
import pytest

from shipyard.release.canary import LABEL
from shipyard.release.record import load_record, save_record
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
    result = shipyard("--project", str(root), "canary", "--release", record.release, "--profile", "cpu")
    assert "canary: 3 service(s) healthy" in result.stdout, result.stdout
    saved = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    for key in ("cpu/model-ops-coordinator", "cpu/real-time-audio-pipeline", UNIT):
        canary = saved.units[key].verdicts["canary"]
        assert canary["passed"] and canary["requests"] == 20 and canary["error_rate"] == 0
        assert 0 < canary["p50_ms"] <= canary["p95_ms"] <= canary["slo_p95_ms"]
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
    result = shipyard("--project", str(root), "canary", "--release", broken.release, check=False)
    assert result.returncode == 12, result.stdout + result.stderr
    assert f"{UNIT}: {reason}" in result.stderr, result.stderr
    verdict = load_record(root / ".shipyard" / "releases" / f"{broken.release}.json").units[UNIT].verdicts["canary"]
    assert verdict["passed"] is False and verdict["reason"].startswith(reason)
    assert not leftovers(), "the canary left a container behind"


def test_hardening_of_the_canary_container(built) -> None:  # type: ignore[no-untyped-def]
    from shipyard.release.canary import running

    _, record, _ = built
    client = docker.from_env()
    try:
        with running(client, UNIT, record.units[UNIT], "hardening-check") as (container, _):
            host = container.attrs["HostConfig"]
            assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
            assert "no-new-privileges" in host["SecurityOpt"][0]
            assert host["Memory"] == 512 * 1024**2 and host["PidsLimit"] == 256
            assert all(b["HostIp"] == "127.0.0.1" for b in host["PortBindings"]["6560/tcp"])
            assert container.attrs["Config"]["User"] == "10001:10001"
        assert not leftovers()
    finally:
        client.close()


def test_leftovers_of_a_killed_run_are_removed(built) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = built
    client = docker.from_env()
    try:
        client.containers.create(record.units[UNIT].ref, labels={LABEL: "killed-run"})
    finally:
        client.close()
    result = shipyard("--project", str(root), "canary", "--release", record.release)
    assert "removed 1 canary container(s) left by an earlier run" in result.stdout
    assert not leftovers()
    assert json.loads((root / ".shipyard" / "releases" / f"{record.release}.json").read_text())
