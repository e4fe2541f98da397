"""The steps of one deploy, each timed, told as it ends and kept in the deployment ledger entry."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ...events import Emit, Event


@dataclass
class StepLog:
    """Where a deploy's steps go: ``steps`` (the ledger entry's list: name, service, when it started in
    UTC, seconds, ok, detail) and ``save`` after each one, so a run killed halfway leaves the steps it took
    in the ledger."""

    target: str
    emit: Emit
    steps: list[dict[str, Any]] = field(default_factory=list)
    save: Callable[[], None] = lambda: None

    @contextmanager
    def step(self, name: str, service: str = "", detail: str = "") -> Iterator[dict[str, Any]]:
        """Time the block as step ``name``; the yielded dict's ``detail`` may be set inside it. An
        exception marks the step failed (with the exception's text) and goes on up."""
        at = datetime.now(UTC)
        record: dict[str, Any] = {"step": name, "service": service, "detail": detail}
        record["at"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
        started = time.monotonic()
        try:
            yield record
        except BaseException as exc:
            record["ok"] = False
            record["detail"] = record["detail"] or str(exc)[:300]
            raise
        else:
            record.setdefault("ok", True)
        finally:
            record["seconds"] = round(time.monotonic() - started, 2)
            self.steps.append(record)
            self._tell(record)
            self.save()

    def _tell(self, record: dict[str, Any]) -> None:
        who = f" {record['service']}" if record["service"] else ""
        outcome = "ok" if record["ok"] else "FAILED"
        detail = f": {record['detail']}" if record["detail"] else ""
        message = f"{self.target}: {record['step']}{who} {outcome} in {record['seconds']:.1f}s{detail}"
        self.emit(Event("deploy.step", message, data=dict(record)))
