"""The one way shipyard runs a subprocess: a ``Runner`` resolves the program, reports ``+ argv``, streams
output lines and raises ``CommandFailed``; ``dry_run`` only reports; ``stop_all()`` ends the children on
Ctrl-C."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CommandFailed, EngineError

LineCallback = Callable[[str], None]

_live: set[subprocess.Popen[str]] = set()
_live_lock = threading.Lock()
_stopping = threading.Event()


def stopping() -> bool:
    """True once ``stop_all`` was called: work still in flight should end quietly."""
    return _stopping.is_set()


def stop_all(grace_s: float = 10.0) -> int:
    """Terminate every child still running (then kill what outlives ``grace_s``); start no new one."""
    _stopping.set()
    with _live_lock:
        procs = list(_live)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
    return len(procs)


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    output: str


@dataclass
class Runner:
    dry_run: bool = False
    echo: Callable[[str], None] | None = None
    tail_lines: int = 40
    history: list[list[str]] = field(default_factory=list)

    def run(
        self,
        argv: Sequence[str],
        *,
        on_line: LineCallback | None = None,
        env: Mapping[str, str] | None = None,  # the whole environment of the child; None inherits
        cwd: Path | None = None,
        stdin: str | None = None,
        check: bool = True,
        capture: bool = True,
    ) -> Completed:
        argv = [str(a) for a in argv]
        self.history.append(argv)
        if self.echo is not None:
            self.echo("+ " + shlex.join(argv))
        if self.dry_run:
            return Completed(argv, 0, "")
        if _stopping.is_set():
            raise CommandFailed(argv, -15, "not started: shipyard is stopping")
        program = shutil.which(argv[0])
        if program is None:
            raise EngineError(f"{argv[0]}: command not found on PATH; run `nox -s up` (or scripts/up.sh)")
        kept: deque[str] = deque(maxlen=None if capture else self.tail_lines)
        with subprocess.Popen(
            [program, *argv[1:]],
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            text=True,
            errors="replace",
        ) as proc:
            with _live_lock:
                _live.add(proc)
            try:
                if stdin is not None:
                    assert proc.stdin is not None
                    proc.stdin.write(stdin)
                    proc.stdin.close()
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = raw.rstrip("\n")
                    kept.append(line)
                    if on_line is not None:
                        on_line(line)
                returncode = proc.wait()
            finally:
                with _live_lock:
                    _live.discard(proc)
        output = "\n".join(kept)
        if check and returncode != 0:
            raise CommandFailed(argv, returncode, output)
        return Completed(argv, returncode, output)
