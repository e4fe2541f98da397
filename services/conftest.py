"""Test helpers shared by the services' test suites.

Only the tests share code: the service packages are independent deployables and import nothing from
each other or from here (each build context excludes ``conftest.py`` and ``tests/``). Each service's own
conftest.py puts its directory on ``sys.path``; everything the suites have in common lives here, and the
helpers tests call directly are handed out as fixtures (the test directories are not packages).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import pytest

# starlette 0.47.3's test client evaluates ``anyio.abc.BlockingPortal`` in annotations at import time,
# which newer anyio (>= 4.11) reports as a deprecated alias. That is a test-only third-party issue, so
# import the test client once here with exactly that warning silenced; every other warning stays an error.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", message=r"The anyio\.abc\.BlockingPortal alias is deprecated", category=DeprecationWarning
    )
    import starlette.testclient  # noqa: F401


# What the services' /health reports comes from these variables; tests start from none of them set.
RUNTIME_ENV_VARS = (
    "SHIPYARD_PROFILE",
    "SHIPYARD_HARDWARE_GPU",
    "TORCH_CUDA_ARCH_LIST",
    "OMP_NUM_THREADS",
    "UVICORN_WORKERS",
)


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset the runtime variables a service reads (restored after the test)."""
    for name in RUNTIME_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def runtime_env(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``runtime_env(values, cpu_count=None)``: set exactly these runtime variables (and ``os.cpu_count()``)."""

    def set_env(values: Mapping[str, str], cpu_count: int | None = None) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        if cpu_count is not None:
            monkeypatch.setattr("os.cpu_count", lambda: cpu_count)

    return set_env


class LineReader:
    """Collects a pipe's lines on a thread, so waiting for one line never blocks past a deadline."""

    _EOF = None

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        try:
            for line in pipe:
                self.lines.put(line)
        except ValueError:  # the pipe was closed under us (teardown after a timeout): nothing more to read
            pass
        finally:
            self.lines.put(self._EOF)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """The first match of ``pattern`` in a line not consumed yet; fails at the deadline or at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout} s; output so far:\n{''.join(self.seen)}"
                ) from None
            if line is self._EOF:
                self.lines.put(line)  # keep EOF visible to later calls and to rest()
                raise AssertionError(f"output ended without a line matching {pattern!r}; output:\n{''.join(self.seen)}")
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match

    def rest(self) -> str:
        """The lines not consumed yet, once the pipe is at EOF (the process has exited)."""
        self.join()
        return "".join(line for line in list(self.lines.queue) if line is not self._EOF)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout=timeout)


@dataclass
class RunningService:
    """A service started by ``start_service``; ``match`` is the ready line's match of the given pattern."""

    proc: subprocess.Popen[str]
    output: LineReader
    match: re.Match[str]

    @property
    def port(self) -> int:
        return int(self.match.group(1))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> str:
        """Send ``sig``, wait for the exit and return the output the process wrote after the ready line."""
        self.proc.send_signal(sig)
        self.proc.wait(timeout=timeout)
        return self.output.rest()


StartService = Callable[..., RunningService]


@pytest.fixture()
def start_service() -> Iterator[StartService]:
    """Start ``python -m <module>`` from a service directory and wait for the line announcing its port.

    ``start_service(module, service_dir, ready, *, output="stderr", env=None, timeout=15.0)`` runs the
    module with ``PORT=0`` (the OS picks a free port), ``PYTHONPATH`` set to the service directory and
    ``env`` on top of the current environment. ``output`` names the stream (stdout or stderr) that is
    read; the other one is discarded. ``ready`` is a regex whose group 1 is the port, searched for in each
    line until ``timeout`` seconds have passed. Every process started is terminated (then killed if it does
    not exit) at teardown, whatever the test did.
    """
    started: list[tuple[subprocess.Popen[str], LineReader]] = []

    def start(
        module: str,
        service_dir: Path,
        ready: str,
        *,
        output: Literal["stdout", "stderr"] = "stderr",
        env: Mapping[str, str] | None = None,
        timeout: float = 15.0,
    ) -> RunningService:
        full_env = {
            **os.environ,
            "PORT": "0",
            "PYTHONPATH": str(service_dir),
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        }
        streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, output: subprocess.PIPE}
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env=full_env,
            cwd=service_dir,
            stdout=streams["stdout"],
            stderr=streams["stderr"],
            text=True,
        )
        pipe = proc.stdout if output == "stdout" else proc.stderr
        assert pipe is not None
        reader = LineReader(pipe)
        started.append((proc, reader))
        return RunningService(proc, reader, reader.wait_for(ready, timeout=timeout))

    yield start

    for proc, reader in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join()  # the child has exited, so its end of the pipe is closed and the reader sees EOF
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _post_json(url: str, payload: Any) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture()
def post_json() -> Callable[[str, Any], Any]:
    """``post_json(url, payload)``: POST ``payload`` as JSON and return the decoded JSON response."""
    return _post_json
