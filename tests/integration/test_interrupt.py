"""SIGINT and SIGKILL mid-build, mid-push, mid-canary and mid-promotion: a re-run converges.

After every interruption: all JSON shipyard wrote parses (records and reports are written
atomically), and no channel points at a digest that is not in a release record with passing
verdicts. The points of interruption are found, not guessed: a line of shipyard's own output,
a request held by the fault proxy, a container with the canary label.
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shipyard.oci.client import RegistryClient
from shipyard.record import ReleaseRecord, load_record
from shipyard.release.channels.promote import gate_problems
from shipyard.release.gates.canary import OWNER_LABEL
from tests.conftest import make_project
from tests.faultproxy import FaultProxy
from tests.integration.conftest import IT_REGISTRY, shipyard

RUN_ID = secrets.token_hex(3)


@dataclass
class Running:
    """A shipyard process whose output is read line by line as it comes."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str] = field(default_factory=queue.Queue)
    _reader: threading.Thread | None = None

    @classmethod
    def start(cls, *args: str, env: dict[str, str] | None = None) -> Running:
        full_env = {**os.environ, "SHIPYARD_REGISTRY": IT_REGISTRY, **(env or {})}
        proc = subprocess.Popen(
            [sys.executable, "-m", "shipyard", *args],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        running = cls(proc)
        running._reader = threading.Thread(target=running._read, daemon=True)
        running._reader.start()
        return running

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"exited {self.proc.returncode} first:\n" + "\n".join(self.lines)
                continue
            self.lines.append(line)
            if regex.search(line):
                return line
        raise AssertionError(f"no line matching {pattern!r} in {timeout}s:\n" + "\n".join(self.lines))

    def signal(self, signum: int, timeout: float = 60) -> int:
        self.proc.send_signal(signum)
        return self.finish(timeout)

    def finish(self, timeout: float = 60) -> int:
        """Wait for the exit, read the rest of the output, close the pipe; the exit code."""
        code = self.proc.wait(timeout=timeout)
        if self._reader is not None:
            self._reader.join(timeout=10)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def assert_json_whole(root: Path) -> int:
    """Every JSON file shipyard wrote parses: nothing truncated by the interruption."""
    files = list((root / ".shipyard").rglob("*.json")) if (root / ".shipyard").exists() else []
    for path in files:
        json.loads(path.read_text())
    assert not list((root / ".shipyard").rglob("*.tmp")) if (root / ".shipyard").exists() else True
    return len(files)


def passing_digests(*roots: Path) -> set[str]:
    digests = set()
    for root in roots:
        for path in (root / ".shipyard" / "releases").glob("*.json"):
            record = load_record(path)
            units = {k: u for k, u in record.units.items()}
            if not gate_problems(record, units):
                digests |= {u.digest for u in units.values()}
    return digests


def assert_channel_safe(registry: RegistryClient, record: ReleaseRecord, channel: str, allowed: set[str]) -> None:
    """The channel points, unit by unit, at nothing or at a digest of a gated release."""
    for key, unit in record.units.items():
        found = registry.resolve(unit.repository.split("/", 1)[1], channel)
        assert found is None or found in allowed, f"{key}: {channel} -> {found}, not from a gated release"


def buildx_processes(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-af", "buildx"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if marker in line]


@pytest.fixture
def project(built, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:  # type: ignore[no-untyped-def]
    """A fresh repo with the families of the cpu profile, building into its own namespace."""
    _, record, _ = built
    root = make_project(tmp_path / "proj", profiles=("cpu",))
    env = {
        "SHIPYARD_BASE_OVERRIDE": f"python={record.units['cpu/base-python'].parent}",
        "SHIPYARD_REGISTRY": f"localhost:5000/shipyard-int-{RUN_ID}-{tmp_path.name[-12:].lower()}",
    }
    yield root, env


def converge_build(root: Path, env: dict[str, str], registry: RegistryClient) -> ReleaseRecord:
    again = shipyard("--project", str(root), "build", env=env)
    assert "units pushed as" in again.stdout
    record = load_record(next((root / ".shipyard" / "releases").glob("*.json")))
    assert set(record.units) == {"cpu/base-python", "cpu/family-web", "cpu/family-ml"}
    for key, unit in record.units.items():
        assert registry.resolve(unit.repository.split("/", 1)[1], record.release) == unit.digest, key
    shipyard("--project", str(root), "verify", env=env)
    return record


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_build_converges_on_rerun(project, registry, signum: int) -> None:  # type: ignore[no-untyped-def]
    root, env = project
    run = Running.start("--project", str(root), "build", "--no-reuse", "--jobs", "1", "-v", env=env)
    run.wait_for(r"^\+ docker buildx build .*cpu/family-web")  # the second unit is being built
    code = run.signal(signum)
    if signum == signal.SIGINT:
        assert code == 130, run.output
        # buildx was stopped with shipyard (if it was still running), not left pushing behind the user's back;
        # the SBOM of the unit before it may still be running beside it (2 commands stopped then)
        assert re.search(r"shipyard: interrupted(; stopped [12] running command\(s\))?; run the same", run.output)
        assert buildx_processes(str(root)) == []
        assert "FAILED" not in run.output  # an interrupted unit did not fail
    else:
        assert code == -signal.SIGKILL
    assert_json_whole(root)
    converge_build(root, env, registry)
    assert_json_whole(root)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_push_converges_on_rerun(project, registry, signum: int) -> None:  # type: ignore[no-untyped-def]
    """Interrupted while the engine pushes the image's release tag (that request held by the proxy)."""
    root, env = project
    with FaultProxy() as proxy:
        via = {
            **env,
            "SHIPYARD_REGISTRY": env["SHIPYARD_REGISTRY"].replace("localhost:5000", f"localhost:{proxy.port}"),
        }
        with proxy.hold(r"^PUT /v2/\S+/cpu/base-python/manifests/\d{8}-") as arrived:
            run = Running.start("--project", str(root), "build", "--no-reuse", "--jobs", "1", env=via)
            assert arrived.wait(timeout=300), "the push never reached the registry"
            code = run.signal(signum)
        assert code == (130 if signum == signal.SIGINT else -signal.SIGKILL), run.output
        if signum == signal.SIGINT:
            assert buildx_processes(str(root)) == []
        assert_json_whole(root)
        record = converge_build(root, via, registry)
    assert record.units["cpu/base-python"].digest


def canary_containers(pid: int) -> list[str]:
    """The canary containers started by shipyard process ``pid`` (other canaries may run meanwhile)."""
    owner = f"{OWNER_LABEL}={socket.gethostname()}:{pid}"
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={owner}"], capture_output=True, text=True)
    return out.stdout.split()


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"]
)
def test_interrupted_canary_leaves_no_container_behind(gated, signum: int) -> None:  # type: ignore[no-untyped-def]
    root, record = gated
    run = Running.start("--project", str(root), "canary", record.release, "--profile", "cpu")
    run.wait_for(r": starting ")
    deadline = time.monotonic() + 60
    while not canary_containers(run.proc.pid):
        assert time.monotonic() < deadline, "no canary container appeared"
        time.sleep(0.1)
    code = run.signal(signum)
    if signum == signal.SIGKILL:
        assert canary_containers(run.proc.pid), "a killed canary cannot clean up: the next run must"
        again = shipyard("--project", str(root), "canary", record.release, "--profile", "cpu")
        assert re.search(r"removed \d canary container\(s\) left by an earlier run", again.stdout), again.stdout
    else:
        assert code == (130 if signum == signal.SIGINT else 143), run.output
        assert "shipyard: interrupted" in run.output
    assert canary_containers(run.proc.pid) == []
    assert_json_whole(root)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_promotion_shows_in_history_and_a_rerun_finishes_it(gated, registry, signum: int) -> None:  # type: ignore[no-untyped-def]
    root, record = gated
    channel = f"int-{RUN_ID}-{int(signum)}"
    allowed = passing_digests(root)
    with FaultProxy() as proxy:
        via = f"{proxy.host}/shipyard-it"
        # one unit's tag move is held: the promotion is under way, not done
        with proxy.hold(rf"^PUT /v2/shipyard-it/cpu/family-ml/manifests/{channel} ") as arrived:
            run = Running.start(
                "--project", str(root), "promote", record.release, "--channel", channel, "--registry", via
            )
            assert arrived.wait(timeout=60), "the promotion never moved a tag"
            run.proc.send_signal(signum)
            if signum == signal.SIGKILL:
                run.proc.wait(timeout=30)
        # SIGINT: the request in flight is let go, shipyard finishes it, moves nothing more, and stops
        code = run.finish()
        assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 130)
        assert_channel_safe(registry, record, channel, allowed)
        history = json.loads(shipyard("history", "--channel", channel, "--json").stdout)
        assert [e["state"] for e in history["entries"]] == ["in-progress"]
        done = shipyard("--project", str(root), "promote", record.release, "--channel", channel, "--registry", via)
    assert "finishing the interrupted promotion" in done.stdout
    for key, unit in record.units.items():
        assert registry.resolve(unit.repository.split("/", 1)[1], channel) == unit.digest, key
    history = json.loads(shipyard("history", "--channel", channel, "--json").stdout)
    assert [e["state"] for e in history["entries"]] == ["complete"]
    assert_json_whole(root)
