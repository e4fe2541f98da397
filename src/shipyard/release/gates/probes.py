"""Talking to a running service: readiness, the golden inference request, latency figures."""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import tenacity

Clock = Callable[[], float]
Sleep = Callable[[float], None]


class NotReady(Exception):
    """Still starting: try again until the deadline."""


class Crashed(Exception):
    def __init__(self, exit_code: int) -> None:
        self.exit_code = exit_code
        super().__init__(f"container exited with code {exit_code}")


def wait_until_ready(
    check: Callable[[], None], deadline_s: float, *, sleep: Sleep = time.sleep, clock: Clock = time.monotonic
) -> float:
    """Call ``check`` until it stops raising ``NotReady``: exponential backoff with jitter, bounded by a
    deadline. Returns the seconds it took; ``NotReady`` after the deadline, ``Crashed`` at once."""
    start = clock()
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(NotReady),
        wait=tenacity.wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05),
        stop=lambda state: clock() - start >= deadline_s,
        sleep=sleep,
        reraise=True,
    )
    retrying(check)
    return clock() - start


def matches(expected: Any, actual: Any) -> bool:
    """``expected`` is a subset of ``actual``: dict keys recursively, lists element by element."""
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of the values at or below it.

    >>> percentile([5, 1, 4, 2, 3], 50)
    3
    >>> percentile(list(range(1, 101)), 95)
    95
    """
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Golden:
    protocol: str  # "http" or "websocket"
    path: str
    method: str
    request: Any
    expect: Mapping[str, Any]


@dataclass
class LoadResult:
    latencies_ms: list[float]
    errors: int
    wrong: int
    first_answer: Any

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + self.errors + self.wrong

    @property
    def error_rate(self) -> float:
        return (self.errors + self.wrong) / self.requests if self.requests else 1.0


def http_health(base_url: str, path: str, client: httpx.Client) -> dict[str, Any]:
    """GET the health path; NotReady until it answers 200 with ``{"status": "ok"}``."""
    try:
        response = client.get(base_url + path, timeout=2.0)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise NotReady(f"health: {type(exc).__name__}") from None
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok":
        raise NotReady(f"health: HTTP {response.status_code}")
    return body


def send_golden(base_url: str, golden: Golden, count: int, clock: Clock = time.perf_counter) -> LoadResult:
    """The golden request ``count`` times, one after another; each answer compared with the expected one."""
    result = LoadResult([], 0, 0, None)
    if golden.protocol == "websocket":
        _ws_golden(base_url.replace("http://", "ws://") + golden.path, golden, count, clock, result)
        return result
    # TCP_NODELAY: httpx writes headers and body separately; with Nagle's algorithm and the server's
    # delayed ACK every POST would wait ~40 ms, and the latency measured would be the kernel's.
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(timeout=10.0, transport=transport) as client:
        for _ in range(count):
            started = clock()
            try:
                response = client.request(golden.method, base_url + golden.path, json=golden.request)
                answer = response.json() if response.status_code == 200 else {"http_status": response.status_code}
            except (httpx.HTTPError, ValueError):
                result.errors += 1
                continue
            _record(result, answer, golden, (clock() - started) * 1000)
    return result


def _ws_golden(url: str, golden: Golden, count: int, clock: Clock, result: LoadResult) -> None:
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    try:
        with connect(url, open_timeout=10, close_timeout=2) as ws:
            for _ in range(count):
                started = clock()
                ws.send(json.dumps(golden.request))
                answer = json.loads(ws.recv(timeout=10))
                _record(result, answer, golden, (clock() - started) * 1000)
    except (OSError, TimeoutError, ValueError, WebSocketException):
        result.errors += count - len(result.latencies_ms) - result.wrong


def _record(result: LoadResult, answer: Any, golden: Golden, latency_ms: float) -> None:
    if result.first_answer is None:
        result.first_answer = answer
    if matches(golden.expect, answer):
        result.latencies_ms.append(latency_ms)
    else:
        result.wrong += 1


@dataclass(frozen=True)
class Judgement:
    """What a golden load says of a service: no ``reason`` means it passed."""

    reason: str
    p50_ms: float | None
    p95_ms: float | None
    error_rate: float
    requests: int


def judge(load: LoadResult, golden: Golden, slo_p95_ms: float) -> Judgement:
    """The canary's verdict on a load, also the live check's after a deploy: a wrong answer first, then
    failed requests, then the SLO."""
    p50 = round(percentile(load.latencies_ms, 50), 1) if load.latencies_ms else None
    p95 = round(percentile(load.latencies_ms, 95), 1) if load.latencies_ms else None
    reason = ""
    if load.wrong:
        reason = f"wrong answer: expected {golden.expect}, got {str(load.first_answer)[:200]}"
    elif load.errors:
        reason = f"{load.errors} of {load.requests} requests failed"
    elif p95 is not None and p95 > slo_p95_ms:
        reason = f"SLO missed: p95 {p95} ms > {slo_p95_ms} ms"
    return Judgement(reason, p50, p95, round(load.error_rate, 3), load.requests)


def golden_of(service: Mapping[str, Any]) -> Golden:
    """The golden request of a service table (the catalog's, or a record's copy of it)."""
    doc = service["golden"]
    return Golden(service["protocol"], doc["path"], doc["method"], doc["request"], doc["expect"])
