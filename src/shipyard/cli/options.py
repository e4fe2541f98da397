"""What an option is, and every option more than one verb takes, declared once: the global ones (with
``Arguments``, the base of every verb's typed arguments), ``--registry``, the release (always the
optional positional ``RELEASE``), ``--dry-run``, the selection, the channel and the target."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

GLOBAL = "global options (before or after the command)"
SELECTION = "selection"


@dataclass(frozen=True)
class Option:
    """One option or positional argument: what argparse needs, and the field of the arguments it fills."""

    flags: tuple[str, ...]  # ("--registry",), ("-v", "--verbose"), or ("release",) for a positional
    help: str
    metavar: str | None = None
    type: Callable[[str], Any] | None = None
    action: str | None = None  # "store_true", "append", "count"
    default: Any = None
    default_factory: Callable[[], Any] | None = None  # computed when the parser is made (Path.cwd())
    nargs: str | None = None
    choices: tuple[str, ...] | None = None
    required: bool = False
    field: str | None = None  # the arguments' field (default: the long flag's name, as argparse's dest)
    group: str | None = None  # a section of `--help` (default: the verb's own options)
    # an old spelling: the field it fills instead, and the one-line note shown when it is used
    # ({verb} and {value} filled in)
    replaces: str | None = None
    deprecated: str = ""

    @property
    def dest(self) -> str:
        """Where argparse puts the value: ``field``, or the name argparse derives from the flags."""
        if self.field:
            return self.field
        long = next((f for f in self.flags if f.startswith("--")), self.flags[0])
        return long.lstrip("-").replace("-", "_")

    @property
    def positional(self) -> bool:
        return not self.flags[0].startswith("-")

    def but(self, **changes: Any) -> Option:
        """The same option with another help, default or requirement (one verb's reading of it)."""
        return replace(self, **changes)

    def add_to(self, parser: argparse._ActionsContainer, *, suppress_default: bool = False) -> None:
        """Add it to ``parser``; ``suppress_default`` (a global option after the verb): unset, the value
        given before the verb stays."""
        kwargs: dict[str, Any] = {"help": argparse.SUPPRESS if self.deprecated else self.help}
        if suppress_default:
            kwargs["default"] = argparse.SUPPRESS
        elif self.default_factory is not None:
            kwargs["default"] = self.default_factory()
        elif self.default is not None or self.action not in ("store_true", "count"):
            kwargs["default"] = self.default
        optional = {"metavar": self.metavar, "type": self.type, "action": self.action, "nargs": self.nargs}
        kwargs.update({key: value for key, value in optional.items() if value is not None})
        if self.choices is not None:
            kwargs["choices"] = list(self.choices)
        if not self.positional:
            kwargs["dest"] = self.dest
            if self.required:
                kwargs["required"] = True
        parser.add_argument(*self.flags, **kwargs)


def positive(text: str) -> int:
    """argparse ``type``: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


# --- read before and after the verb: every verb's arguments have them -------------------------------

PROJECT = Option(
    ("--project",),
    type=Path,
    default_factory=Path.cwd,
    metavar="DIR",
    help="the repository with shipyard.toml, profiles/ and dockerfiles/ (default: .)",
    group=GLOBAL,
)
VERBOSE = Option(
    ("-v", "--verbose"), action="count", default=0, help="show every command run (-vv: and buildx output)", group=GLOBAL
)
QUIET = Option(("-q", "--quiet"), action="store_true", default=False, help="only results", group=GLOBAL)
JSON = Option(
    ("--json",),
    action="store_true",
    default=False,
    help="stdout is one JSON document (the plan, the release record, the verdicts, the ledger entry…); "
    "no progress unless -v, and then on stderr",
    group=GLOBAL,
)
GLOBAL_OPTIONS = (PROJECT, VERBOSE, QUIET, JSON)


@dataclass(frozen=True, kw_only=True)
class Arguments:
    """What every verb's handler receives besides its own options: the global ones."""

    project: Path
    verbose: int
    quiet: bool
    json: bool


# --- shared by several verbs -------------------------------------------------------------------------

REGISTRY = Option(
    ("--registry",),
    metavar="HOST/NAMESPACE",
    help="the registry and namespace, e.g. ghcr.io/acme (default: env SHIPYARD_REGISTRY, else "
    "localhost:5000/shipyard; verify, promote, report and model-signature: the release record's)",
)
RELEASE = Option(
    ("release",),
    nargs="?",
    metavar="RELEASE",
    help="the release tag, e.g. 20250111-656873b3, or an alias such as 1.4 (default: the newest record)",
)
# verify, scan, canary and model-signature named it --release TAG before: still read, with a note
OLD_RELEASE = Option(
    ("--release",),
    metavar="TAG",
    help="the old spelling of RELEASE",
    field="release_flag",
    replaces="release",
    deprecated="--release is deprecated; name the release as the argument: shipyard {verb} {value}",
)
DRY_RUN = Option(
    ("--dry-run",),
    action="store_true",
    help="print the plan (for build, its exact commands); change nothing",
)
PROFILES = Option(
    ("--profile",),
    action="append",
    default=[],
    metavar="NAME",
    help="only this profile (repeatable; default: every profile)",
    group=SELECTION,
)
IMAGES = Option(
    ("--image",),
    action="append",
    default=[],
    metavar="NAME",
    help="only this image and its parents (repeatable; default: the whole catalog)",
    group=SELECTION,
)
CHANNEL = Option(("--channel",), required=True, metavar="NAME", help="the channel, e.g. canary or stable")
TARGET = Option(("--target",), required=True, metavar="NAME", help="a [targets.NAME] of shipyard.toml")
TARGETS = Option(
    ("--target",), field="targets", action="append", metavar="NAME", help="only these targets (repeatable)"
)
LOCK_WAIT = Option(
    ("--lock-wait",),
    type=float,
    default=0.0,
    metavar="SECONDS",
    help="wait this long for another deploy of a target to finish (default 0: refuse at once)",
)
