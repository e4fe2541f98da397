from __future__ import annotations

import threading
import time

import pytest

from shipyard.build.scheduler import run_dag

ORDER = ["cpu/base", "cpu/web", "cpu/ml", "cpu/svc-a", "cpu/svc-b", "pc2/base", "pc2/web"]
PARENTS = {
    "cpu/base": None,
    "cpu/web": "cpu/base",
    "cpu/ml": "cpu/web",
    "cpu/svc-a": "cpu/ml",
    "cpu/svc-b": "cpu/web",
    "pc2/base": None,
    "pc2/web": "pc2/base",
}


class FakeBuilder:
    def __init__(self, fail: set[str] = frozenset(), seconds: float = 0.02) -> None:  # type: ignore[assignment]
        self.fail, self.seconds = fail, seconds
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.started: list[str] = []
        self.finished: list[str] = []

    def __call__(self, key: str) -> str:
        with self.lock:
            parent = PARENTS[key]
            assert parent is None or parent in self.finished, f"{key} started before {parent} finished"
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(key)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.finished.append(key)
        if key in self.fail:
            raise RuntimeError(f"{key} broke")
        return key.upper()


@pytest.mark.parametrize("jobs", [1, 2, 4])
def test_parents_first_and_bounded_concurrency(jobs: int) -> None:
    builder = FakeBuilder()
    outcomes = run_dag(ORDER, PARENTS, builder, jobs)
    assert all(o.ok for o in outcomes.values()) and outcomes["cpu/ml"].result == "CPU/ML"
    assert builder.peak <= jobs
    if jobs > 1:
        assert builder.peak > 1, "independent units should overlap"


def test_child_starts_as_soon_as_its_parent_is_done() -> None:
    builder = FakeBuilder()
    run_dag(ORDER, PARENTS, builder, 2)
    # pc2/base does not wait for the cpu chain; it starts in the first wave
    assert builder.started.index("pc2/base") < builder.started.index("cpu/web")


def test_failure_skips_dependents_and_independent_units_finish() -> None:
    builder = FakeBuilder(fail={"cpu/web"})
    outcomes = run_dag(ORDER, PARENTS, builder, 2)
    assert str(outcomes["cpu/web"].error) == "cpu/web broke"
    for key in ("cpu/ml", "cpu/svc-a", "cpu/svc-b"):
        assert outcomes[key].skipped_because == "cpu/web" and key not in builder.started
    assert outcomes["pc2/web"].ok and outcomes["cpu/base"].ok
