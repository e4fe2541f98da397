from __future__ import annotations

import os
import socket
import subprocess
from datetime import UTC, datetime

from shipyard.release.gates.canary import OWNER_LABEL, _is_leftover

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_container_of_a_dead_run_on_this_host_is_a_leftover() -> None:
    labels = {OWNER_LABEL: f"{socket.gethostname()}:{dead_pid()}"}
    assert _is_leftover(labels, "2026-11-23T11:59:59.000000000Z", NOW)


def test_a_canary_running_now_on_this_host_is_left_alone() -> None:
    labels = {OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"}
    assert not _is_leftover(labels, "2026-11-20T00:00:00Z", NOW)


def test_another_hosts_container_is_a_leftover_only_when_old() -> None:
    labels = {OWNER_LABEL: "ci-runner-7:1234"}
    assert not _is_leftover(labels, "2026-11-23T11:30:00.5Z", NOW)
    assert _is_leftover(labels, "2026-11-23T10:30:00.123456789Z", NOW)
    assert _is_leftover({}, "2026-11-23T11:59:59Z", NOW)  # an older shipyard's container, without an owner
