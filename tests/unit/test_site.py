"""The manual builds with `mkdocs build --strict`, its command reference comes from the parser, and a broken
link or anchor fails the build (shown on a copy of the site's sources with one planted).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.cli.parser import make_parser

ROOT = Path(__file__).resolve().parents[2]


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=config.parent)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = mkdocs_build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    return out


def test_the_site_builds_strict_with_every_page_of_the_nav(site: Path) -> None:
    for page in ("getting-started", "reference/catalog", "reference/commands", "architecture", "bench/RESULTS"):
        assert (site / page / "index.html").is_file(), page
    assert (site / "bench" / "scaling.svg").is_file()  # RESULTS.md's picture, published beside it
    assert not list(site.rglob("*.py")), "the hooks are build code, not pages"


def test_the_command_reference_lists_every_command_of_the_parser(site: Path) -> None:
    page = (site / "reference" / "commands" / "index.html").read_text(encoding="utf-8")
    assert "shipyard:commands" not in page  # the marker was replaced
    in_code = {word.strip(",") for span in re.findall(r"<code>([^<]*)</code>", page) for word in span.split()}
    parser = make_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f'id="shipyard-{name}"' in page, name
        for action in command._actions:
            for option in action.option_strings:
                if action.help != argparse.SUPPRESS and option not in ("-h", "--help"):
                    assert option in in_code, (name, option)


@pytest.mark.parametrize(
    ("page", "planted", "named"),
    [
        ("reference/policy.md", "[the catalog](catalogue.md)", "catalogue.md"),
        ("getting-started.md", "[a verb](reference/commands.md#shipyard-deplyo)", "#shipyard-deplyo"),
    ],
)
def test_a_broken_link_fails_the_build(tmp_path: Path, page: str, planted: str, named: str) -> None:
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", tmp_path / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "bench", tmp_path / "bench", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    with (tmp_path / "docs" / page).open("a", encoding="utf-8") as f:
        f.write(f"\nSee {planted}.\n")
    done = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0, done.stderr[-4000:]
    assert named in done.stderr, done.stderr[-4000:]
