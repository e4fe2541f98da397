"""One deploy per target at a time: an exclusive lock on the deploying machine that names its holder.

Like a channel's lock: ``fcntl.flock`` on ``<state dir>/locks/deploy-<target>-<hash>.lock`` (the hash of
the engine and the target), released by the kernel however its holder ends, a SIGKILL included, so a
killed deploy never leaves a target locked. The holder writes who it is and since when into the file;
a second deploy or rollout of the target waits up to ``--lock-wait`` seconds (default 0: refuse at
once), then refuses with that line.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ...errors import TargetBusy
from ...state import make_dirs

POLL_S = 0.2


def lock_file(directory: Path, target: str, engine_url: str) -> Path:
    digest = hashlib.sha256(f"{engine_url}\0{target}".encode()).hexdigest()[:12]
    return directory / f"deploy-{target}-{digest}.lock"


@contextmanager
def target_lock(
    path: Path,
    target: str,
    wait_s: float = 0.0,
    *,
    who: str = "",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Hold the target's lock for the block; TargetBusy naming the holder when it is not free in ``wait_s``."""
    make_dirs(path.parent)
    with open(path, "a+") as handle:
        deadline = clock() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= deadline:
                    raise TargetBusy(_busy(path, target, wait_s)) from None
                sleep(POLL_S)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "who": who,
            "since": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(holder) + "\n")
        handle.flush()
        yield


def _busy(path: Path, target: str, wait_s: float) -> str:
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        holder = {}
    who = holder.get("who") or "another deploy"
    where = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('since', '?')}"
    waited = f" (waited {wait_s:g}s)" if wait_s else ""
    return (
        f"target {target}: {who} is deploying it ({where}){waited}; nothing was changed. Wait for it, or pass "
        "--lock-wait SECONDS to queue behind it"
    )
