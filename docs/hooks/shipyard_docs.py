"""MkDocs hooks: the command reference generated from the CLI's parser, and the benchmark results page.

`reference/commands.md` holds a marker that becomes, at build time, one section per command of
`shipyard.cli.parser.make_parser()` (usage, arguments, help, example), read through argparse's public
structure only (its actions, the subparsers' choices, `format_usage`), so the page cannot drift from the
parser. `bench/RESULTS.md` (which `nox -s bench` writes outside `docs/`) and the files it links are
published under `bench/` as they are, so the site's figures are those of the last run.
"""

from __future__ import annotations

import argparse
import html
import os
import posixpath
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from markdown.extensions.toc import slugify
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- shipyard:commands -->"
COMMANDS_PAGE = "reference/commands.md"
BENCH_FILES = ("RESULTS.md", "scaling.svg", "scale-raw.json")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$")
USAGE_COLUMNS = "100"


def on_config(config: Any) -> Any:
    """Document this checkout's parser, not whichever shipyard happens to be installed."""
    src = REPO / "src"
    if (src / "shipyard").is_dir() and str(src) not in sys.path:
        sys.path.insert(0, str(src))
    return config


def on_files(files: Files, config: Any) -> Files:
    for name in BENCH_FILES:
        path = REPO / "bench" / name
        if path.is_file():  # a missing RESULTS.md leaves the links to it broken: --strict fails
            files.append(File.generated(config, f"bench/{name}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    if page.file.src_uri != COMMANDS_PAGE:
        return markdown
    if MARKER not in markdown:
        raise PluginError(f"{COMMANDS_PAGE} lost its {MARKER} marker: the command reference has nowhere to go")
    from shipyard.cli.parser import make_parser

    return markdown.replace(MARKER, commands_markdown(make_parser(), prose_sections(files)))


def prose_sections(files: Files) -> dict[str, str]:
    """verb -> a link (relative to the commands page) to the manual's section headed `shipyard VERB`."""
    found: dict[str, str] = {}
    for file in files.documentation_pages():
        if file.src_uri == COMMANDS_PAGE:
            continue
        for title in headings(file.content_string):
            anchor = slugify(re.sub(r"<[^>]+>|`", "", title), "-")
            link = posixpath.relpath(file.src_uri, posixpath.dirname(COMMANDS_PAGE)) + f"#{anchor}"
            for verb in re.findall(r"`shipyard ([a-z][a-z0-9-]*)`", title):
                found.setdefault(verb, link)
    return found


def headings(text: str) -> Iterator[str]:
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            yield m.group(2)


def commands_markdown(parser: argparse.ArgumentParser, sections: dict[str, str]) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = USAGE_COLUMNS  # argparse wraps usage at the terminal's width: pin it
    try:
        out = ["## Options every command takes", "", *arguments_table(parser, top=True)]
        for names, sub, help_text in subcommands(parser):
            out += [f"## `shipyard {names[0]}`", ""]
            if len(names) > 1:
                out += ["Also: " + ", ".join(f"`shipyard {n}`" for n in names[1:]), ""]
            if help_text:
                out += [cell(help_text[0].upper() + help_text[1:]) + ".", ""]
            out += ["```text", sub.format_usage().strip(), "```", ""]
            out += arguments_table(sub, top=False)
            if sub.epilog:
                example = re.sub(r"^example:\s*", "", sub.epilog.strip())
                out += ["Example:", "", "```sh", example, "```", ""]
            if names[0] in sections:
                out += [f"More: [`shipyard {names[0]}` in the manual]({sections[names[0]]}).", ""]
        return "\n".join(out)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[list[str], argparse.ArgumentParser, str]]:
    """(names, parser, one-line help) of every subcommand, in the parser's order, aliases folded."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        by_parser: dict[int, list[str]] = {}
        parsers: dict[int, argparse.ArgumentParser] = {}
        for name, sub in action.choices.items():
            by_parser.setdefault(id(sub), []).append(name)
            parsers[id(sub)] = sub
        for key, names in by_parser.items():
            sub = parsers[key]
            help_text = next((helps[n] for n in names if helps.get(n)), "") or sub.description or ""
            if help_text != argparse.SUPPRESS:
                yield names, sub, help_text


def arguments_table(parser: argparse.ArgumentParser, *, top: bool) -> list[str]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.help == argparse.SUPPRESS:  # hidden (a deprecated spelling, say)
            continue
        if not top and action.default == argparse.SUPPRESS and action.option_strings:
            continue  # the options every command takes, repeated on each subcommand: listed once above
        rows.append(f"| `{invocation(action)}` | {cell(expand_help(action, parser.prog))} |")
    if not rows:
        return []
    return ["| argument | meaning |", "|---|---|", *rows, ""]


def invocation(action: argparse.Action) -> str:
    """`--jobs N`, `-v, --verbose`, `RELEASE`: the argument as `--help` names it."""
    if action.choices is not None and action.metavar is None:
        value = "{" + ",".join(map(str, action.choices)) + "}"
    else:
        value = str(action.metavar or (action.dest if not action.option_strings else action.dest.upper()))
    if not action.option_strings:
        return value
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    return ", ".join(f"{option} {value}" for option in action.option_strings)


def expand_help(action: argparse.Action, prog: str) -> str:
    """The help text with its `%(default)s`-style fields filled in, as argparse prints it."""
    text = action.help or ""
    if "%" not in text:
        return text
    params: dict[str, Any] = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
    params["prog"] = prog
    if params.get("choices") is not None:
        params["choices"] = ", ".join(map(str, params["choices"]))
    return text % params


def cell(text: str) -> str:
    """Text for a Markdown table cell: HTML-escaped outside code spans, pipes escaped everywhere."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    return "".join(p if p.startswith("`") else html.escape(p, quote=False) for p in parts).replace("|", "\\|")
