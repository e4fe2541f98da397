"""`shipyard --help` lists every command; every command's help says what it does and shows an example;
the completion script completes."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess

import pytest

from shipyard.cli.main import main
from shipyard.cli.parser import make_parser


def subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def one_line_helps() -> dict[str, str]:
    sub = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action.help or "" for action in sub._choices_actions}


def help_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return squeeze(capsys.readouterr().out)


def squeeze(text: str) -> str:
    """Without whitespace: argparse wraps lines anywhere, even after the hyphen of "air-gapped"."""
    return "".join(text.split())


def test_top_level_help_lists_every_command_with_its_one_line_help(capsys: pytest.CaptureFixture[str]) -> None:
    out = help_of([], capsys)
    helps = one_line_helps()
    assert set(helps) == set(subcommands())
    for name, text in helps.items():
        assert text, f"{name} has no one-line help"
        assert squeeze(f"{name} {text}") in out, name
    assert squeeze("example: shipyard ") in out


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_command_help_describes_it_and_has_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = help_of([command], capsys)
    assert squeeze(f"example: shipyard {command}") in out, out
    assert squeeze(one_line_helps()[command]) in out  # the description, under the usage


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_option_has_help(command: str) -> None:
    for action in subcommands()[command]._actions:
        assert action.help, f"shipyard {command} {'/'.join(action.option_strings) or action.dest}: no help text"


def test_completion_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert zsh.startswith("#compdef shipyard") and "bake-file" in zsh and "--db-repository" in zsh
    assert main(["completion", "bash"]) == 0
    bash = capsys.readouterr().out
    assert "_shtab_compgen_dirs" in bash  # --project DIR completes directories


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_completion_completes_commands_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out

    def complete(*words: str) -> list[str]:
        probe = (
            f"COMP_WORDS=(shipyard {' '.join(words)}); COMP_CWORD={len(words)}; "
            '_shtab_shipyard; printf "%s\\n" "${COMPREPLY[@]}"'
        )
        done = subprocess.run(
            ["bash", "-c", f"{script}\n{probe}"], capture_output=True, text=True, timeout=30, check=True
        )
        return done.stdout.split()

    assert complete("bu") == ["build"]
    assert complete("scan", "--db") == ["--db-repository"]
    assert complete("completion", "z") == ["zsh"]


@pytest.mark.parametrize("command", sorted(subcommands()))
def test_every_example_parses(command: str) -> None:
    """The example is a command line `shipyard` accepts (up to a comment, `&&`, a pipe or a redirection)."""
    epilog = subcommands()[command].epilog or ""
    example = epilog.split("example:", 1)[1].strip()
    argv = shlex.split(re.split(r"\s{2,}|\s(?:&&|\||>)\s", example)[0])
    assert argv[:2] == ["shipyard", command], argv
    args = make_parser().parse_args(argv[1:])  # a usage error exits 2 and fails the test
    assert args.command == command
