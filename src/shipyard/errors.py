"""Every failure shipyard reports on purpose, each class with its own exit code.

The CLI catches ``ShipyardError`` once and prints ``str(error)`` as one line; anything
else is a bug and gets a traceback. Based on ``Exception`` so that nox's per-session
error handling sees it.
"""

from __future__ import annotations

from collections.abc import Sequence


class ShipyardError(Exception):
    exit_code = 1


class ConfigError(ShipyardError):
    """A profile, the catalog, a template or a command-line flag is wrong.

    ``file`` (as the message shows it, relative to the project where it can be) and ``line`` say where,
    when a file is at fault: GitHub Actions annotations point there. The message is unchanged by them.
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


class CycleError(ConfigError):
    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(f"catalog: parents form a cycle: {' -> '.join(self.cycle)}")


class GitStateError(ShipyardError):
    """The work tree cannot produce a release tag (dirty, no commits, not a repository)."""

    exit_code = 3


class EngineError(ShipyardError):
    """The Docker engine, buildx or the image store is missing or misconfigured."""

    exit_code = 4


class RegistryError(ShipyardError):
    exit_code = 5


class CommandFailed(ShipyardError):
    """A subprocess exited non-zero; ``output`` keeps its last lines for the report."""

    exit_code = 6

    def __init__(self, argv: Sequence[str], returncode: int, output: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        tail = output.strip().splitlines()[-1:] if output.strip() else []
        detail = f": {tail[0]}" if tail else ""
        super().__init__(f"{self.argv[0]} {self.argv[1] if len(self.argv) > 1 else ''} exited {returncode}{detail}")


class BuildError(ShipyardError):
    exit_code = 7


class VerifyFailed(ShipyardError):
    exit_code = 10


class ScanFailed(ShipyardError):
    exit_code = 11


class CanaryFailed(ShipyardError):
    exit_code = 12


class PromoteRefused(ShipyardError):
    exit_code = 13


class DeployFailed(ShipyardError):
    """A deploy (or a rollout) did not leave its target healthy and answering; rolled back where it could be."""

    exit_code = 14


class LedgerBroken(ShipyardError):
    """A channel's ledger does not verify: an entry is unsigned, signed by a key that is not trusted,
    changed after it was signed, or does not follow the entry before it. The message names the first one."""

    exit_code = 15


class PruneRefused(ShipyardError):
    """``shipyard prune`` would take away what a channel needs (its release, or its rollback target)."""

    exit_code = 16


class TargetBusy(ShipyardError):
    """Another deploy or rollout holds the target's lock; the message names who and since when."""

    exit_code = 17


class DriftFound(ShipyardError):
    """``shipyard status``: a target runs something other than its channel or its last deployment."""

    exit_code = 18
