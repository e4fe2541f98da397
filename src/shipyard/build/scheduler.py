"""Run a DAG of jobs with a bounded pool: a job's children start as soon as it is ready.

A job is ready when it returns, or earlier when it says so (``ready(result)``: a build whose image is
pushed, while its cache export still runs); only jobs not yet ready count against ``jobs``. On a failure
before it was ready, every job that depends on it (directly or not) is skipped; independent jobs finish.
Pure scheduling: what a job does is the caller's function.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

R = TypeVar("R")
Ready = Callable[[R], None]  # a job's early word: its children may start with this result


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
    order: Sequence[str],
    parents: Mapping[str, str | None],
    work: Callable[[str, Ready[R]], R],
    jobs: int,
) -> dict[str, Outcome[R]]:
    """``order`` lists keys parents-first; ``parents`` maps a key to its parent key (or None)."""
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    children: dict[str, list[str]] = {key: [] for key in order}
    for key in order:
        parent = parents.get(key)
        if parent in children:
            children[parent].append(key)
    position = {key: i for i, key in enumerate(order)}
    outcomes: dict[str, Outcome[R]] = {}
    waiting = [k for k in order if parents.get(k) not in children]
    futures: dict[str, Future[R]] = {}
    working: set[str] = set()  # started and not ready yet: what ``jobs`` bounds
    released: set[str] = set()  # ready before they ended: their children are on their way
    changed = threading.Condition()
    news: list[tuple[str, Literal["ready", "done"]]] = []

    def tell(key: str, what: Literal["ready", "done"]) -> None:
        with changed:
            news.append((key, what))
            changed.notify()

    def skip_descendants(key: str, cause: str) -> None:
        for child in children[key]:
            outcomes[child] = Outcome(child, skipped_because=cause)
            skip_descendants(child, cause)

    pool = ThreadPoolExecutor(max_workers=max(jobs, len(order)))
    interrupted = True
    try:
        while waiting or futures.keys() - outcomes.keys():
            while waiting and len(working) < jobs:
                key = waiting.pop(0)
                working.add(key)
                futures[key] = pool.submit(work, key, _telling(tell, key, "ready"))
                futures[key].add_done_callback(_telling(tell, key, "done"))
            with changed:
                while not news:
                    changed.wait()
                batch, news[:] = sorted(news, key=lambda n: (position[n[0]], n[1] == "done")), []
            for key, what in batch:
                if what == "ready":
                    if key in working:  # a job that said so twice, or after it ended, changes nothing
                        working.discard(key)
                        released.add(key)
                        waiting.extend(children[key])
                    continue
                working.discard(key)
                error = futures[key].exception()
                if error is None:
                    outcomes[key] = Outcome(key, result=futures[key].result())
                    if key not in released:
                        waiting.extend(children[key])
                else:
                    outcomes[key] = Outcome(key, error=error)
                    if key not in released:  # children that started on its word keep their own outcomes
                        skip_descendants(key, key)
        interrupted = False
    finally:
        # on Ctrl-C: start nothing more and do not wait here for the jobs that run (the caller stops them)
        pool.shutdown(wait=not interrupted, cancel_futures=interrupted)
    return {key: outcomes[key] for key in order}


def _telling(
    tell: Callable[[str, Literal["ready", "done"]], None], key: str, what: Literal["ready", "done"]
) -> Callable[[Any], None]:
    """A callback (a job's ``ready``, a future's done-callback) that tells the loop ``what`` of ``key``."""

    def told(_arg: Any) -> None:
        tell(key, what)

    return told
