from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from shipyard.errors import CommandFailed, EngineError
from shipyard.events import Event
from shipyard.preflight import check_engine
from shipyard.runner import Completed, Runner

CONTAINERD = {"ServerVersion": "26.1.5", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]]}


class Engine(Runner):
    def __init__(self, info: dict[str, Any] | None, buildx: bool = True) -> None:
        super().__init__()
        self.info, self.buildx = info, buildx

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:  # type: ignore[override]
        if argv[1] == "info":
            if self.info is None:
                raise CommandFailed(list(argv), 1, "Cannot connect to the Docker daemon")
            return Completed(list(argv), 0, json.dumps(self.info))
        if not self.buildx:
            raise CommandFailed(list(argv), 1, "docker: 'buildx' is not a docker command.")
        return Completed(list(argv), 0, "github.com/docker/buildx v0.13.1")


def test_all_good_says_what_it_found() -> None:
    events: list[Event] = []
    check_engine(Engine(CONTAINERD), events.append)
    assert events[0].message == "engine 26.1.5 (containerd image store), github.com/docker/buildx v0.13.1"


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        (Engine(None), "Docker engine not reachable (docker info failed): start it with `nox -s up`"),
        (Engine({"ServerErrors": ["Cannot connect"]}), "Docker engine not reachable: Cannot connect"),
        (Engine({"DriverStatus": [["Backing Filesystem", "extfs"]]}), "the engine uses the classic image store"),
        (Engine(CONTAINERD, buildx=False), "docker buildx is missing: install the buildx plugin"),
    ],
)
def test_each_failure_is_one_actionable_line(engine: Engine, message: str) -> None:
    with pytest.raises(EngineError) as err:
        check_engine(engine, lambda e: None)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
