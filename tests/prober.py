"""A client outside shipyard that keeps asking a target's services while it deploys, and counts.

Per HTTP endpoint a thread sends a request every ``1 / rate`` seconds over one keep-alive connection (as
a real client does) and records each answer: its time (epoch seconds, to compare with the deployment
ledger's step times), whether it was right, and its latency. Per WebSocket endpoint a thread holds one
stream open and sends a message on it every ``interval`` seconds, recording when (if ever) it was cut.
Everything is bounded: ``max_s`` stops the threads by themselves, and only the addresses given are
contacted (the tests' own loopback or namespace addresses).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Endpoint:
    name: str  # e.g. "model-ops-coordinator health"
    url: str  # http://host:port/path, or ws://host:port/path for a stream
    method: str = "GET"
    body: Any = None
    expect: Callable[[Any], bool] = lambda answer: True  # is this answer right?


@dataclass
class Tally:
    endpoint: str
    answers: list[tuple[float, float, str]] = field(default_factory=list)  # (when, latency s, who) of each right
    # answer; who: the edge's X-Shipyard-Colour header (the colour that answered), "" where there is none
    failures: list[tuple[float, str]] = field(default_factory=list)  # (when, what went wrong)
    cut_at: float | None = None  # a stream: when the server ended it, if it did before the prober stopped
    cut: str = ""  # how it ended

    @property
    def times(self) -> list[float]:
        """When each right answer arrived."""
        return [t + latency for t, latency, _ in self.answers]

    @property
    def longest_gap_s(self) -> float:
        """The longest time between two right answers (what a user sees as an outage or a hold)."""
        times = self.times
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    @property
    def slowest_s(self) -> float:
        return max((latency for _, latency, _ in self.answers), default=0.0)


class Prober:
    """``with Prober(endpoints, rate=25) as probe: …`` then ``probe.tallies``."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        *,
        rate: float = 25.0,
        interval: float = 0.25,
        max_s: float = 600.0,
        timeout_s: float = 10.0,  # how long a client waits for an answer (above a stop-first hold)
    ) -> None:
        self.endpoints = endpoints
        self.timeout_s = timeout_s
        self.rate = rate
        self.interval = interval
        self.max_s = max_s
        self.tallies: dict[str, Tally] = {e.name: Tally(e.name) for e in endpoints}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Prober:
        self._deadline = time.time() + self.max_s
        for endpoint in self.endpoints:
            run = self._stream if endpoint.url.startswith("ws://") else self._requests
            thread = threading.Thread(target=run, args=(endpoint,), daemon=True, name=f"probe {endpoint.name}")
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait_answering(self, timeout_s: float = 30.0) -> None:
        """Until every endpoint has answered right at least once (streams: opened)."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if all(t.answers for t in self.tallies.values()):
                return
            time.sleep(0.05)
        silent = [name for name, t in self.tallies.items() if not t.answers]
        raise AssertionError(f"the prober had no right answer from {silent} in {timeout_s}s: {self.summary()}")

    def _running(self) -> bool:
        return not self._stop.is_set() and time.time() < self._deadline

    def _requests(self, endpoint: Endpoint) -> None:
        tally = self.tallies[endpoint.name]
        period = 1.0 / self.rate
        with httpx.Client(timeout=self.timeout_s) as client:
            while self._running():
                started = time.time()
                try:
                    response = client.request(endpoint.method, endpoint.url, json=endpoint.body)
                    answer = response.json() if response.status_code == 200 else None
                    if response.status_code == 200 and endpoint.expect(answer):
                        who = response.headers.get("X-Shipyard-Colour", "")
                        tally.answers.append((started, time.time() - started, who))
                    else:
                        tally.failures.append((started, f"HTTP {response.status_code}: {response.text[:100]}"))
                except (httpx.HTTPError, ValueError) as exc:
                    tally.failures.append((started, f"{type(exc).__name__}: {exc}"[:200]))
                self._stop.wait(max(0.0, period - (time.time() - started)))

    def _stream(self, endpoint: Endpoint) -> None:
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        tally = self.tallies[endpoint.name]
        try:
            with connect(endpoint.url, open_timeout=10, close_timeout=2) as ws:
                while self._running():
                    started = time.time()
                    ws.send(json.dumps(endpoint.body))
                    answer = json.loads(ws.recv(timeout=10))
                    if endpoint.expect(answer):
                        tally.answers.append((started, time.time() - started, ""))
                    else:
                        tally.failures.append((started, f"wrong answer: {str(answer)[:100]}"))
                    self._stop.wait(self.interval)
        except (OSError, TimeoutError, ValueError, WebSocketException) as exc:
            tally.cut_at, tally.cut = time.time(), f"{type(exc).__name__}: {exc}"[:200]

    def failures(self) -> dict[str, list[tuple[float, str]]]:
        return {name: t.failures for name, t in self.tallies.items() if t.failures}

    def summary(self) -> dict[str, Mapping[str, Any]]:
        return {
            name: {
                "answers": len(t.answers),
                "failures": len(t.failures),
                "first failures": [what for _, what in t.failures[:3]],
                "longest gap s": round(t.longest_gap_s, 3),
                "cut": t.cut,
                "slowest s": round(t.slowest_s, 3),
            }
            for name, t in self.tallies.items()
        }
