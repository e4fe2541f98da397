from __future__ import annotations

import pytest

from shipyard.release.gates.probes import Crashed, NotReady, matches, percentile, wait_until_ready


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_backoff_grows_and_is_capped_then_ready() -> None:
    t = FakeTime()
    answers = iter([NotReady("starting")] * 8 + [None])

    def check() -> None:
        answer = next(answers)
        if answer is not None:
            raise answer

    took = wait_until_ready(check, 60, sleep=t.sleep, clock=t.clock)
    assert len(t.sleeps) == 8 and took == pytest.approx(sum(t.sleeps))
    assert t.sleeps[0] < 0.2 and t.sleeps[3] > t.sleeps[0] * 4  # exponential
    assert max(t.sleeps) <= 2.0 + 0.05  # capped (+ jitter)


def test_deadline_raises_not_ready() -> None:
    t = FakeTime()

    def never() -> None:
        raise NotReady("health: HTTP 500")

    with pytest.raises(NotReady, match="HTTP 500"):
        wait_until_ready(never, 10, sleep=t.sleep, clock=t.clock)
    assert 10 <= t.now <= 12.1


def test_crash_stops_waiting_at_once() -> None:
    t = FakeTime()

    def crashed() -> None:
        raise Crashed(137)

    with pytest.raises(Crashed) as err:
        wait_until_ready(crashed, 60, sleep=t.sleep, clock=t.clock)
    assert err.value.exit_code == 137 and t.sleeps == []


def test_percentiles_nearest_rank() -> None:
    values = [12.0, 5.0, 7.0, 30.0, 9.0, 11.0, 8.0, 6.0, 10.0, 100.0]
    assert percentile(values, 50) == 9.0
    assert percentile(values, 95) == 100.0
    assert percentile([3.0], 95) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_matches_is_a_recursive_subset() -> None:
    answer = {"label": "high", "probabilities": {"high": 0.99}, "vad": [True, False], "frames": 5}
    assert matches({"label": "high"}, answer)
    assert matches({"vad": [True, False], "frames": 5}, answer)
    assert not matches({"label": "low"}, answer)
    assert not matches({"vad": [True]}, answer)
    assert not matches({"missing": 1}, answer)
