"""scripts/up.sh against the real engine: idempotent, and it recovers from a killed session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

UP = Path(__file__).resolve().parents[2] / "scripts" / "up.sh"


def up() -> str:
    result = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def test_up_twice_starts_nothing_the_second_time() -> None:
    up()
    out = up()
    assert "engine already running" in out and "registry already serving on 127.0.0.1:5000" in out
    assert "starting" not in out


def test_up_recovers_after_engine_and_registry_were_killed() -> None:
    up()
    subprocess.run(["pkill", "-KILL", "-x", "dockerd"], check=True)
    subprocess.run(["pkill", "-KILL", "-f", "docker-registry serve"], check=True)
    assert not engine_answers()
    out = up()  # stale pid files and sockets (and unreaped zombies) must not stop it
    assert "starting dockerd" in out and "starting registry" in out
    assert engine_answers()
    assert httpx.get("http://127.0.0.1:5000/v2/", timeout=5).status_code == 200
