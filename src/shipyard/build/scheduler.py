"""Run a DAG of jobs with a bounded pool: a job starts as soon as its parents are done.

On a failure, every job that depends on it (directly or not) is skipped; independent jobs
finish. Pure scheduling: what a job does is the caller's function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[R]):
    key: str
    result: R | None = None
    error: BaseException | None = None
    skipped_because: str | None = None  # the failed ancestor

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped_because is None


def run_dag(
    order: Sequence[str], parents: Mapping[str, str | None], work: Callable[[str], R], jobs: int
) -> dict[str, Outcome[R]]:
    """``order`` lists keys parents-first; ``parents`` maps a key to its parent key (or None)."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    children: dict[str, list[str]] = {key: [] for key in order}
    for key in order:
        parent = parents.get(key)
        if parent in children:
            children[parent].append(key)
    outcomes: dict[str, Outcome[R]] = {}
    ready = [k for k in order if parents.get(k) not in children]
    running: dict[Future[R], str] = {}

    def skip_descendants(key: str, cause: str) -> None:
        for child in children[key]:
            outcomes[child] = Outcome(child, skipped_because=cause)
            skip_descendants(child, cause)

    pool = ThreadPoolExecutor(max_workers=jobs)
    interrupted = True
    try:
        while ready or running:
            while ready and len(running) < jobs:
                key = ready.pop(0)
                running[pool.submit(work, key)] = key
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: order.index(running[f])):
                key = running.pop(future)
                error = future.exception()
                if error is None:
                    outcomes[key] = Outcome(key, result=future.result())
                    ready.extend(children[key])
                else:
                    outcomes[key] = Outcome(key, error=error)
                    skip_descendants(key, key)
        interrupted = False
    finally:
        # on Ctrl-C: start nothing more and do not wait here for the jobs that run (the caller stops them)
        pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
    return {key: outcomes[key] for key in order}
