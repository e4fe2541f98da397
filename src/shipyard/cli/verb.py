"""What a verb is (help, example, options, typed arguments, handler), and the one table of where each is
declared: every verb-group module ends with its ``VERBS``, and ``VERB_MODULES`` names the module, so
``shipyard promote`` imports channel_commands alone, not the build side nor the gates."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, Generic, TypeVar

from ..errors import ConfigError
from .console import Console
from .options import GLOBAL_OPTIONS, Arguments, Option

A = TypeVar("A", bound=Arguments)

# verb -> the module (in cli/) that declares it; the order of `shipyard --help`
VERB_MODULES: dict[str, str] = {
    "up": "host_commands",
    "down": "host_commands",
    "base": "build_commands",
    "plan": "build_commands",
    "render": "build_commands",
    "build": "build_commands",
    "bake-file": "build_commands",
    "verify": "release_commands",
    "scan": "release_commands",
    "canary": "release_commands",
    "promote": "channel_commands",
    "rollback": "channel_commands",
    "history": "channel_commands",
    "report": "report_commands",
    "model-signature": "model_commands",
    "trivy-db": "release_commands",
    "compose-file": "deploy_commands",
    "deploy": "deploy_commands",
    "rollout": "deploy_commands",
    "status": "status_command",
    "deployments": "deploy_commands",
    "prune": "prune_commands",
    "keygen": "key_commands",
    "init": "init_command",
    "completion": "completion",
}


@dataclass(frozen=True)
class Verb(Generic[A]):
    """One ``shipyard`` verb. ``args`` is the frozen dataclass its handler ``run`` receives: one field for
    each option (and each global one), checked when the verb is declared."""

    name: str
    help: str  # one line: in `shipyard --help`, and opening `shipyard NAME --help`
    example: str  # a command line `shipyard NAME …` that parses (test_help), maybe with a remark after it
    args: type[A]
    run: Callable[[A, Console], int]
    options: tuple[Option, ...] = ()

    def __post_init__(self) -> None:
        declared = {f.name for f in fields(self.args)}
        filled = {o.dest for o in (*GLOBAL_OPTIONS, *self.options) if o.replaces is None}
        if declared != filled:
            raise TypeError(
                f"verb {self.name}: {self.args.__name__} and its options differ: fields without an option "
                f"{sorted(declared - filled)}, options without a field {sorted(filled - declared)}"
            )
        if not self.example.startswith(f"shipyard {self.name}"):
            raise TypeError(f"verb {self.name}: the example must be a `shipyard {self.name} …` command line")

    def add_to(self, commands: argparse._SubParsersAction[Any]) -> None:
        """Its subparser: the one-line help, the options (own first, then the global ones), the example."""
        parser = commands.add_parser(
            self.name, help=self.help, description=self.help, epilog=f"example: {self.example}"
        )
        groups: dict[str, argparse._ArgumentGroup] = {}
        for option in (*self.options, *GLOBAL_OPTIONS):
            group = option.group
            where = parser if group is None else groups.setdefault(group, parser.add_argument_group(group))
            option.add_to(where, suppress_default=option in GLOBAL_OPTIONS)

    def arguments(self, namespace: argparse.Namespace) -> A:
        """The handler's typed arguments from what argparse read: lists become tuples; an old spelling
        fills the field it stands for, with a note on stderr."""
        values = {f.name: getattr(namespace, f.name) for f in fields(self.args)}
        for option in self.options:
            old = getattr(namespace, option.dest, None)
            if option.replaces is None or old is None:
                continue
            if values[option.replaces] not in (None, old):
                given = f"{option.replaces.upper()} {values[option.replaces]} and {option.flags[0]} {old}"
                raise ConfigError(f"{given}: named twice; name it once, as {option.replaces.upper()}")
            values[option.replaces] = old
            print(f"shipyard: note: {option.deprecated.format(verb=self.name, value=old)}", file=sys.stderr)
        typed: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return self.args(**typed)


def load_verbs(names: Iterable[str] | None = None) -> list[Verb[Any]]:
    """The verbs ``names`` (default: every verb, in the table's order), importing only their modules."""
    wanted = list(VERB_MODULES) if names is None else list(names)
    found: dict[str, Verb[Any]] = {}
    for module in dict.fromkeys(VERB_MODULES[name] for name in wanted):
        for verb in importlib.import_module(f".{module}", __package__).VERBS:
            if VERB_MODULES.get(verb.name) != module:
                raise TypeError(f"cli/{module}.py declares {verb.name!r}, which VERB_MODULES does not place there")
            found[verb.name] = verb
    missing = [name for name in wanted if name not in found]
    if missing:
        raise TypeError(f"VERB_MODULES places {missing} in modules that do not declare them")
    return [found[name] for name in wanted]
