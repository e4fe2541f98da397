"""The live check after a deploy: each service's health and golden requests at the target's host.

The canary's probes and its verdict (:func:`probes.judge`), against the services the target now
runs, through the ports they publish, so "deployed" means answering right within the SLO where it
serves, not only that its containers say healthy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ..gates.probes import NotReady, golden_of, http_health, judge, send_golden, wait_until_ready


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
        """The reason in a few words for the one-line outcome: ``wrong answer from model-ops``."""
        return f"{self.reason.split(':', 1)[0]} from {self.service}"


def check_service(host: str, port: int, service: str, check: Mapping[str, Any]) -> ServiceCheck:
    """``check``: the service's ``probe`` (its catalog table) and ``requests`` (golden count)."""
    probe = check["probe"]
    base_url = f"http://{host}:{port}"
    with httpx.Client() as http:

        def healthy() -> None:
            http_health(base_url, probe["health"], http)

        try:
            wait_until_ready(healthy, float(probe["ready_timeout_s"]))
        except NotReady as exc:
            return ServiceCheck(service, f"not answering at {base_url}{probe['health']} in time: {exc}", port=port)
    golden = golden_of(probe)
    verdict = judge(send_golden(base_url, golden, int(check["requests"])), golden, float(probe["slo_p95_ms"]))
    return ServiceCheck(service, verdict.reason, verdict.p95_ms, verdict.requests, port)


def check_target(
    host: str, checks: Mapping[str, Mapping[str, Any]], ports: Mapping[str, Sequence[int]]
) -> list[ServiceCheck]:
    """Every service at each of its ``ports`` (one, or one per replica); all are checked, so the outcome
    names each one that fails. A service with no port to reach fails: nothing of it answers."""
    results = []
    for service, check in checks.items():
        if not ports.get(service):
            results.append(ServiceCheck(service, "not published: no running task has a port to reach"))
        results += [check_service(host, port, service, check) for port in ports.get(service, ())]
    return results
