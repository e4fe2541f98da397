"""The live check after a deploy: each service's health and golden requests at the target's host.

The canary's probes and its verdict (:func:`probes.judge`), against the services the target now
runs, through the ports they publish, so "deployed" means answering right within the SLO where it
serves, not only that its containers say healthy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from ..gates.probes import Crashed, NotReady, golden_of, http_health, judge, send_golden, wait_until_ready

Alive = Callable[[], None]  # raises Crashed once the container behind a check is clearly not coming up


@dataclass(frozen=True)
class ServiceCheck:
    service: str
    reason: str  # empty: healthy, answering right, within the SLO
    p95_ms: float | None = None
    requests: int = 0
    port: int = 0  # where it was reached

    @property
    def passed(self) -> bool:
        return not self.reason

    @property
    def short(self) -> str:
        """The reason in a few words for the one-line outcome: ``wrong answer from model-ops``,
        ``not healthy in 60s from model-ops``."""
        cause = re.split(r":| \(", self.reason, maxsplit=1)[0]
        return f"{cause} from {self.service}"


def check_service(
    host: str, port: int, service: str, check: Mapping[str, Any], alive: Alive | None = None
) -> ServiceCheck:
    """``check``: the service's ``probe`` (its catalog table) and ``requests`` (golden count). The wait for
    health is bounded by the service's own ``ready_timeout_s`` (a model may take minutes to load), and
    ended at once when ``alive`` says its container crashed."""
    probe = check["probe"]
    base_url = f"http://{host}:{port}"
    with httpx.Client() as http:

        def healthy() -> None:
            if alive is not None:
                alive()
            http_health(base_url, probe["health"], http)

        try:
            wait_until_ready(healthy, float(probe["ready_timeout_s"]))
        except NotReady as exc:
            timeout = f"{float(probe['ready_timeout_s']):g}"
            return ServiceCheck(
                service, f"not healthy in {timeout}s (at {base_url}{probe['health']}: {exc})", port=port
            )
        except Crashed as exc:
            return ServiceCheck(service, f"not starting: {exc}", port=port)
    golden = golden_of(probe)
    verdict = judge(send_golden(base_url, golden, int(check["requests"])), golden, float(probe["slo_p95_ms"]))
    return ServiceCheck(service, verdict.reason, verdict.p95_ms, verdict.requests, port)


def check_target(
    host: str, checks: Mapping[str, Mapping[str, Any]], ports: Mapping[str, Sequence[int]]
) -> list[ServiceCheck]:
    """Every service at each of its ``ports`` (one, or one per replica), all at once: the slowest bounds
    the wait, and each one that fails is named. A service with no port to reach fails: nothing answers."""
    results = [
        ServiceCheck(service, "not published: no running task has a port to reach")
        for service in checks
        if not ports.get(service)
    ]
    pairs = [(service, port) for service in checks for port in ports.get(service, ())]
    if pairs:
        with ThreadPoolExecutor(max_workers=min(8, len(pairs))) as pool:
            results += pool.map(lambda pair: check_service(host, pair[1], pair[0], checks[pair[0]]), pairs)
    return results
