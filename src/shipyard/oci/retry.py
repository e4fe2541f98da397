"""When and how long shipyard retries a registry request: transient faults (connection errors, 429, 5xx)
with exponential backoff and jitter, bounded by attempts and a deadline, ``Retry-After`` honoured; any
other answer is never retried."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import tenacity

from ..errors import ConfigError

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class Transient(Exception):
    """A retryable answer; ``retry_after`` is the registry's own hint in seconds, if it gave one."""

    def __init__(self, what: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _env_number(name: str, default: float, *, minimum: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ConfigError(f"{name}={raw!r}: expected a number ≥ {minimum:g}")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    deadline_s: float = 90.0  # per request, retries and waits included
    timeout_s: float = 30.0  # per attempt: connect, read, write
    backoff_s: float = 0.25  # first wait; doubles, with jitter, up to max_wait_s
    max_wait_s: float = 8.0

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Defaults, or ``SHIPYARD_REGISTRY_ATTEMPTS`` / ``_DEADLINE`` / ``_TIMEOUT`` (seconds)."""
        base = cls()
        return cls(
            attempts=int(_env_number("SHIPYARD_REGISTRY_ATTEMPTS", base.attempts, minimum=1)),
            deadline_s=_env_number("SHIPYARD_REGISTRY_DEADLINE", base.deadline_s, minimum=0.1),
            timeout_s=_env_number("SHIPYARD_REGISTRY_TIMEOUT", base.timeout_s, minimum=0.1),
        )

    def retrying(
        self, *, sleep: Callable[[float], None] | None = None, attempts: int | None = None
    ) -> tenacity.Retrying:
        """The retry loop of one request: ``attempts`` (default the policy's) tries of it, the backoff
        between them, all within the deadline."""
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.backoff_s, max=self.max_wait_s, jitter=self.backoff_s
        )

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hint = exc.retry_after if isinstance(exc, Transient) and exc.retry_after is not None else 0.0
            return max(backoff(state), hint)

        kwargs: dict[str, object] = {} if sleep is None else {"sleep": sleep}
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Transient),
            wait=wait,
            stop=tenacity.stop_after_attempt(attempts or self.attempts) | tenacity.stop_before_delay(self.deadline_s),
            reraise=True,
            **kwargs,  # type: ignore[arg-type]
        )
