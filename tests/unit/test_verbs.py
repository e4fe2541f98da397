"""The verbs' declarations: each handler takes its verb's typed arguments, the table and the modules
agree, `shipyard VERB` reads argv as the complete parser does, and the old ``--release TAG`` still works
(with a note)."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from shipyard.cli.console import Console
from shipyard.cli.main import COMMANDS, main, read_argv
from shipyard.cli.options import OLD_RELEASE, RELEASE, Arguments, Option
from shipyard.cli.parser import make_parser, verb_named
from shipyard.cli.verb import VERB_MODULES, Verb, load_verbs
from shipyard.errors import ConfigError
from shipyard.record import ReleaseRecord, save_record
from tests.docpages import command_lines

VERBS = load_verbs()


def test_the_table_names_every_verb_once_and_each_module_declares_its_own() -> None:
    assert [v.name for v in VERBS] == list(VERB_MODULES) == list(COMMANDS)
    sub = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(VERB_MODULES)
    for verb in VERBS:
        assert verb.run.__module__ == f"shipyard.cli.{VERB_MODULES[verb.name]}", verb.name


@pytest.mark.parametrize("verb", VERBS, ids=[v.name for v in VERBS])
def test_each_handler_takes_its_verbs_typed_arguments(verb: Verb[Any]) -> None:
    hints = get_type_hints(verb.run)
    first = next(iter(hints.values()))
    assert first is verb.args, f"{verb.run.__name__} takes {first}, its verb declares {verb.args.__name__}"
    assert verb.args.__dataclass_params__.frozen  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True)
class _Two(Arguments):
    one: str
    two: str


def _handler(args: _Two, console: Console) -> int:
    return 0


def test_a_field_without_an_option_or_an_option_without_a_field_fails_at_declaration() -> None:
    with pytest.raises(TypeError, match=r"fields without an option \['two'\], options without a field \[\]"):
        Verb("x", help="h", example="shipyard x", args=_Two, run=_handler, options=(Option(("--one",), help="h"),))
    three = (Option(("--one",), help="h"), Option(("--two",), help="h"), Option(("--three",), help="h"))
    with pytest.raises(TypeError, match=r"options without a field \['three'\]"):
        Verb("x", help="h", example="shipyard x", args=_Two, run=_handler, options=three)


def examples() -> list[list[str]]:
    found = []
    for verb in VERBS:
        words = shlex.split(verb.example.split("  ")[0].split(" && ")[0].split(" > ")[0])
        found.append(words[1:])
    return found


TRICKY = [
    ["--project", "build", "promote", "--channel", "stable"],  # a project folder named like a verb
    ["--proj", "build", "promote", "--channel", "stable"],  # an abbreviated global option
    ["--project=build", "-v", "verify", "20250111-656873b3"],
    ["-vq", "--json", "plan", "--profile", "cpu", "-v"],
    ["verify", "--release", "20250111-656873b3", "--project", "x"],
    ["promote", "build", "--channel", "c"],  # a release named like a verb
    ["promote", "--channel", "c", "--project"],  # a usage error: the same one
    ["--ver", "promote", "--channel", "c"],  # ambiguous: --version or --verbose
]


@pytest.mark.parametrize("argv", examples() + TRICKY + command_lines(), ids=shlex.join)
def test_the_parser_of_one_verb_reads_argv_as_the_complete_parser_does(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    def read(parser: argparse.ArgumentParser) -> object:
        try:
            return vars(parser.parse_args(argv))
        except SystemExit as exit_:
            return exit_.code, capsys.readouterr().err

    name = verb_named(argv)
    assert name is None or name in VERB_MODULES
    alone = read(make_parser(load_verbs([name]))) if name else None
    assert alone is None or alone == read(make_parser()), argv


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h", "promote"], ["--version"], ["bild"], ["--json"]])
def test_argv_that_names_no_verb_plainly_is_read_by_the_complete_parser(argv: list[str]) -> None:
    assert verb_named(argv) is None


@pytest.mark.parametrize("verb", ["verify", "scan", "canary", "model-signature"])
def test_the_old_release_flag_still_names_the_release_with_a_one_line_note(
    verb: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = ["--model", "m", "-o", "x.sig"] if verb == "model-signature" else []
    declared, namespace = read_argv([verb, "--release", "20250111-abcd1234", *extra])
    assert declared.arguments(namespace).release == "20250111-abcd1234"  # type: ignore[attr-defined]
    assert capsys.readouterr().err == (
        f"shipyard: note: --release is deprecated; name the release as the argument: "
        f"shipyard {verb} 20250111-abcd1234\n"
    )
    declared, namespace = read_argv([verb, "20250111-abcd1234", *extra])
    assert declared.arguments(namespace).release == "20250111-abcd1234"  # type: ignore[attr-defined]
    assert capsys.readouterr().err == ""
    declared, namespace = read_argv([verb, "20250111-abcd1234", "--release", "20250111-00000000", *extra])
    with pytest.raises(ConfigError, match="RELEASE 20250111-abcd1234 and --release 20250111-00000000: named twice"):
        declared.arguments(namespace)


def test_the_release_is_the_argument_in_every_verb_that_takes_one() -> None:
    takes = {v.name for v in VERBS if any(o.dest == "release" for o in v.options)}
    assert takes == {"verify", "scan", "canary", "promote", "report", "model-signature", "compose-file", "deploy"}
    for verb in VERBS:
        for option in verb.options:
            if option.dest == "release":
                assert option.positional and option.flags == RELEASE.flags and option.nargs == "?", verb.name
            if option.flags == ("--release",):
                assert option is OLD_RELEASE, verb.name


def test_shipyard_reads_the_old_spelling_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_record(tmp_path, ReleaseRecord("20250111-abcdef12", "abcdef12", "", "localhost:5000/acme"))
    save_record(tmp_path, ReleaseRecord("20250112-12345678", "12345678", "", "localhost:5000/acme"))
    argv = ["--project", str(tmp_path), "model-signature", "--release", "20250111-abcdef12", "--model", "m"]
    assert main([*argv, "-o", str(tmp_path / "s.sig")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "shipyard: note: --release is deprecated; name the release as the argument: "
        "shipyard model-signature 20250111-abcdef12"
    )
    assert err[1].startswith("shipyard: error: --model m: release 20250111-abcdef12 "), err  # the one it named
