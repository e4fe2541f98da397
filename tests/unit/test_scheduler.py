from __future__ import annotations

import threading
import time

import pytest

from shipyard.build.scheduler import Ready, run_dag

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

    def __call__(self, key: str, ready: Ready[str]) -> str:
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


class EarlyBuilder(FakeBuilder):
    """Says it is ready halfway (an image pushed, its cache export still running), then finishes."""

    def __init__(self, fail_late: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__(seconds=0.05)
        self.fail_late = fail_late
        self.readied: list[str] = []
        self.building = 0
        self.peak_building = 0
        self.events: list[tuple[str, str]] = []

    def __call__(self, key: str, ready: Ready[str]) -> str:
        with self.lock:
            parent = PARENTS[key]
            assert parent is None or parent in self.readied, f"{key} started before {parent} was ready"
            self.started.append(key)
            self.events.append(("start", key))
            self.building += 1
            self.peak_building = max(self.peak_building, self.building)
        time.sleep(self.seconds)
        with self.lock:
            self.building -= 1
            self.readied.append(key)
        ready(key.upper())
        time.sleep(self.seconds)  # what is left once ready: children start meanwhile
        with self.lock:
            self.finished.append(key)
            self.events.append(("end", key))
        if key in self.fail_late:
            raise RuntimeError(f"{key} broke after it was ready")
        return key.upper()


def test_children_start_when_their_parent_is_ready_not_when_it_ends() -> None:
    builder = EarlyBuilder()
    chain = ["cpu/base", "cpu/web", "cpu/ml", "cpu/svc-a"]
    outcomes = run_dag(chain, PARENTS, builder, 1)
    assert all(o.ok for o in outcomes.values())
    # one job at a time builds; a ready one finishing beside it does not count against jobs
    assert builder.peak_building == 1
    # each child started on its parent's word, before the parent ended
    for parent, child in zip(chain, chain[1:], strict=False):
        assert builder.events.index(("start", child)) < builder.events.index(("end", parent))


def test_a_job_failing_after_it_was_ready_fails_alone() -> None:
    builder = EarlyBuilder(fail_late={"cpu/web"})
    outcomes = run_dag(ORDER, PARENTS, builder, 2)
    assert str(outcomes["cpu/web"].error) == "cpu/web broke after it was ready"
    for key in ("cpu/ml", "cpu/svc-a", "cpu/svc-b"):  # started on its word: their outcomes are their own
        assert outcomes[key].ok and key in builder.started
