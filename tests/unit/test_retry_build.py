from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from shipyard.build.buildx import BuildProgress, BuildRequest
from shipyard.build.retry_build import BuildRunner, transient_registry_fault
from shipyard.errors import BuildError, CommandFailed
from shipyard.events import Event
from shipyard.runner import Completed, Runner

PUSH_503 = (
    "#7 pushing localhost:5000/ns/cpu/x:1 with docker\n"
    "ERROR: unexpected status from HEAD request to http://localhost:5000/v2/ns/cpu/x/manifests/1: "
    "503 Service Unavailable"
)
RUN_FAILED = 'ERROR: process "/bin/sh -c make" did not complete successfully: exit code: 2'


class ScriptedRunner(Runner):
    """Answers each run with the next scripted output: a string fails with it, None succeeds."""

    def __init__(self, script: list[str | None]) -> None:
        super().__init__()
        self.script = script

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:
        self.history.append(list(argv))
        outcome = self.script.pop(0)
        if outcome is not None:
            raise CommandFailed(list(argv), 1, outcome)
        kwargs["on_line"]("#5 [2/2] RUN echo hi")
        return Completed(list(argv), 0, "")


def request(tmp_path: Path) -> BuildRequest:
    return BuildRequest(tmp_path, tmp_path / "Dockerfile", "r:1", "linux/amd64", "r/cache", tmp_path / "m.json")


def run(tmp_path: Path, script: list[str | None]) -> tuple[ScriptedRunner, list[Event], list[float], BuildProgress]:
    runner, events, sleeps = ScriptedRunner(script), [], []
    builds = BuildRunner(runner, nullcontext(), events.append, sleep=sleeps.append)
    progress = builds.run(request(tmp_path), unit="cpu/x", on_line=lambda p: p.feed)
    return runner, events, sleeps, progress


def test_a_registry_fault_during_the_push_runs_buildx_again(tmp_path: Path) -> None:
    runner, events, sleeps, progress = run(tmp_path, [PUSH_503, "read: connection reset by peer", None])
    assert len(runner.history) == 3 and runner.history[0] == runner.history[2]
    assert [e.kind for e in events] == ["unit.retry", "unit.retry"]
    assert "503 Service Unavailable" in events[0].message and "attempt 2 of 4" in events[0].message
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.5
    assert progress.current == "RUN echo hi"


def test_a_failing_step_is_not_retried(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"cpu/x: docker buildx build failed \(exit 1\) at start") as info:
        run(tmp_path, [RUN_FAILED + "\n" + PUSH_503])
    assert "attempts" not in str(info.value)


def test_gives_up_after_the_attempts_and_says_so(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"after 4 attempts \(registry faults\)"):
        run(tmp_path, [PUSH_503] * 4)


@pytest.mark.parametrize(
    "line",
    [
        "failed to push x: unexpected status: 502 Bad Gateway",
        "failed to copy: httpReadSeeker: failed open: unexpected status code https://r/v2/x/blobs/sha256:1: 429 "
        "Too Many Requests",
        'failed to do request: Put "http://r/v2/x/manifests/1": EOF',
    ],
)
def test_registry_faults_are_recognised(line: str) -> None:
    assert transient_registry_fault("#9 ...\n" + line) == line


def test_auth_and_missing_images_are_not_faults() -> None:
    assert transient_registry_fault("ERROR: failed to authorize: 401 Unauthorized") is None
    assert transient_registry_fault("ERROR: docker.io/library/nope: not found") is None
