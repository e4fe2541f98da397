"""Run one buildx build, and run it again when the registry, not the build, failed it.

BuildKit and the engine's pusher do not retry a registry request that answered 5xx/429 or
dropped the connection: one such answer fails the whole build. The layers are in the local
store by then, so running the same buildx command again costs an export and the push, not a
build. Only failures whose output names such a registry fault are retried, with exponential
backoff and jitter and a bounded number of attempts; a failing ``RUN`` step fails at once.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ..errors import BuildError, CommandFailed
from ..events import Emit, Event
from ..runner import Runner
from .buildx import BuildProgress, BuildRequest

ATTEMPTS = 4
# what containerd/BuildKit print when a registry request failed in transit or answered 429/5xx
_TRANSIENT_RE = re.compile(
    r"unexpected status(?: code)?(?: from \w+ request to \S+)?: (?:429|5\d\d)\b"
    r"|\b(?:429 Too Many Requests|500 Internal Server Error|502 Bad Gateway|503 Service Unavailable"
    r"|504 Gateway Timeout)\b"
    r"|connection reset by peer|broken pipe|unexpected EOF|\": EOF$|i/o timeout|context deadline exceeded"
    r"|TLS handshake timeout|server closed idle connection|http2: server sent GOAWAY",
)
_FAILED_STEP_RE = re.compile(r"did not complete successfully: exit code")


def transient_registry_fault(output: str) -> str | None:
    """The output line that shows a retryable registry fault, or None (a real build failure)."""
    if _FAILED_STEP_RE.search(output):
        return None
    for line in reversed(output.splitlines()):
        if _TRANSIENT_RE.search(line):
            return line.strip()
    return None


@dataclass(frozen=True)
class BuildRunner:
    """Runs buildx builds through ``runner``, at most as many at once as ``slot`` lets in, each again
    (up to ``attempts`` times, waiting with ``sleep``) when the registry failed it; tells ``emit``."""

    runner: Runner
    slot: AbstractContextManager[object]
    emit: Emit
    attempts: int = ATTEMPTS
    sleep: Callable[[float], None] | None = None

    def run(
        self,
        request: BuildRequest,
        *,
        unit: str,
        on_line: Callable[[BuildProgress], Callable[[str], None]],
        on_pushed: Callable[[BuildProgress], None] | None = None,
    ) -> BuildProgress:
        """Run ``request``; ``on_line(progress)`` gives the line reader for each attempt's progress.

        Once the image is pushed (its export vertex done, with a digest), ``on_pushed(progress)`` is told
        and the slot is given back: what is left, the cache export, waits on the registry, not a core. A
        failure after that is not run again (the image another unit may build on is in the registry); it
        comes back as ``progress.failed_after_push``."""
        wait = self.sleep or (lambda s: threading.Event().wait(s))
        for attempt in range(1, self.attempts + 1):
            progress = BuildProgress()
            slot = _Held(self.slot)
            read = on_line(progress)

            def line(
                text: str, progress: BuildProgress = progress, slot: _Held = slot, read: Callable[[str], None] = read
            ) -> None:
                read(text)
                if progress.exported_digest and request.push and not slot.pushed:
                    slot.pushed = True
                    slot.release()
                    if on_pushed is not None:
                        on_pushed(progress)

            try:
                with slot:
                    self.runner.run(request.argv(), on_line=line)
                return progress
            except CommandFailed as exc:
                if slot.pushed:  # what failed came after the image was in the registry
                    progress.failed_after_push = "\n".join(exc.output.splitlines()[-5:])
                    return progress
                fault = transient_registry_fault(exc.output)
                if fault is None or attempt == self.attempts:
                    last = "\n".join(exc.output.splitlines()[-15:])
                    tries = f" after {attempt} attempts (registry faults)" if fault else ""
                    raise BuildError(
                        f"{unit}: docker buildx build failed (exit {exc.returncode}){tries} at "
                        f"{progress.current or 'start'}\n{last}"
                    ) from None
                delay = min(8.0, 0.5 * 2 ** (attempt - 1)) + random.uniform(0, 0.5)
                self.emit(
                    Event(
                        "unit.retry",
                        f"{unit}: registry fault during the build ({fault[:160]}); "
                        f"running buildx again in {delay:.1f}s (attempt {attempt + 1} of {self.attempts})",
                        unit=unit,
                    )
                )
                wait(delay)
        raise AssertionError("unreachable")


class _Held:
    """A slot held for one buildx process and given back once: when its image is pushed, else at the end."""

    def __init__(self, slot: AbstractContextManager[object]) -> None:
        self.slot, self.released, self.pushed = slot, False, False

    def __enter__(self) -> _Held:
        self.slot.__enter__()
        return self

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.slot.__exit__(None, None, None)

    def __exit__(self, *exc: object) -> None:
        self.release()
