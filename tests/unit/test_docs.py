"""The README and the manual (docs/) stay true to the code: config keys, commands, exit codes, environment,
the quick start, the import rules.

Keys and commands are read from the parsers themselves, so a key or a command added to the code
without a line in the manual fails here, and so does a row for a key the code refuses. Sections are
looked up by heading across every page of docs/, wherever a page puts them; the README keeps the
quick start and links into the manual.
"""

from __future__ import annotations

import argparse
import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest

from shipyard import errors
from shipyard.cli.parser import make_parser
from shipyard.config import catalog, models, policy, profiles, targets
from shipyard.errors import ConfigError
from tests.docpages import PAGES, README, code_blocks, command_lines
from tests.unit.test_layout import MAY_IMPORT

ROOT = Path(__file__).resolve().parents[2]
HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*$")
KEY_ROW_RE = re.compile(r"^\|\s*`([^`]+)`\s*\|")
KEY_PREFIXES = ("org.opencontainers.", "io.shipyard.", "in-toto.io", "dev.cosignproject.")


def lines_outside_code(text: str) -> list[tuple[str, bool]]:
    """Every line with whether it is inside a fenced code block (a ``# comment`` there is no heading)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            out.append((line, True))
            fenced = not fenced
            continue
        out.append((line, fenced))
    return out


def headings(text: str) -> list[tuple[int, str, int]]:
    """(level, title, line index) of every Markdown heading of a page."""
    found = []
    for i, (line, fenced) in enumerate(lines_outside_code(text)):
        if not fenced and (m := HEADING_RE.match(line)):
            found.append((len(m.group(1)), m.group(2), i))
    return found


def page_section(text: str, level: int, start: int, *, nested: bool = True) -> str:
    """The text under the heading at line ``start`` up to the next heading of the same or a higher level
    (with ``nested=False``: up to any heading), or the end of its page."""
    lines = text.splitlines()
    end = len(lines)
    for next_level, _, index in headings(text):
        if index > start and (not nested or next_level <= level):
            end = index
            break
    return "\n".join(lines[start + 1 : end])


def section(title: str, *, nested: bool = True, pages: dict[str, str] = PAGES) -> str:
    """The text under the one heading of the manual matching ``title`` (a regex), wherever it lives."""
    found = [
        (path, page_section(text, level, start, nested=nested))
        for path, text in pages.items()
        for level, heading, start in headings(text)
        if re.search(title, heading)
    ]
    assert found, f"no page of docs/ has a heading matching {title!r}"
    assert len(found) == 1, f"several headings match {title!r}: {[path for path, _ in found]}"
    return found[0][1]


def table_keys(text: str) -> set[str]:
    """The backticked first cells of a section's table rows: the keys it documents."""
    return {m.group(1) for line in text.splitlines() if (m := KEY_ROW_RE.match(line))}


def allowed_keys(tmp_path: Path, toml: str) -> set[str]:
    """The keys the catalog parser allows where ``toml`` puts an unknown key, from its own error."""
    (tmp_path / catalog.CATALOG_FILE).write_text(toml)
    with pytest.raises(ConfigError) as error:
        catalog.load_catalog(tmp_path)
    return set(str(error.value).rsplit("allowed: ", 1)[1].split(", "))


def quick_start_block(text: str, where: str) -> str:
    blocks = code_blocks(section(r"^Quick start$", pages={where: text}))
    assert blocks, f"the Quick start of {where} has no code block"
    return blocks[0]


def test_quick_start_is_exactly_two_commands() -> None:
    block = quick_start_block(README, "README.md")
    commands = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    assert commands[0].startswith("python3 -m pip install nox") and commands[0].endswith("nox -s release"), commands
    assert commands[1] == "nox -s tests"
    getting_started = "docs/getting-started.md"
    assert quick_start_block(PAGES[getting_started], getting_started) == block  # the manual says the same


def test_readme_is_the_newcomers_page() -> None:
    """Short, one picture of the pipeline, and every link it gives leads somewhere (GitHub renders them)."""
    assert len(README.splitlines()) <= 250, len(README.splitlines())
    assert code_blocks(section(r"^The pipeline$", pages={"README.md": README}))
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if not re.match(r"^[a-z]+://", link)]
    assert any(link.startswith("docs/") for link in local), local
    for link in local:
        assert (ROOT / link).is_file(), f"README.md links {link}, which is not a file of the repository"
    for page in ("getting-started", "adopting", "architecture", "benchmarks", "reference/catalog"):
        assert f"](docs/{page}.md)" in README, page


def test_catalog_reference_lists_exactly_the_parsed_keys(tmp_path: Path) -> None:
    project_keys = allowed_keys(tmp_path, "[project]\nnmae = 'x'\n")
    assert {"project", "policy", "images", "targets", "models"} == allowed_keys(tmp_path, "nope = 1\n")
    expected = {
        r"^`\[project\]`": project_keys,
        r"^`\[policy\]`": set(policy.POLICY_KEYS),
        r"^`\[targets\.<name>\]`": set(targets.TARGET_KEYS),
        r"^`\[images\.<name>\]`": set(catalog.IMAGE_KEYS),
        r"^`\[images\.<name>\.service\]`": set(catalog.SERVICE_KEYS),
        r"^`\[images\.<name>\.service\.golden\]`": set(catalog.GOLDEN_KEYS),
        r"^`\[models\.<name>\]`": set(models.MODEL_KEYS),
    }
    for title, keys in expected.items():
        assert table_keys(section(title, nested=False)) == keys, title


def test_profile_reference_lists_exactly_the_parsed_keys() -> None:
    assert table_keys(section(r"^The profile object$", nested=False)) == set(profiles.PROFILE_KEYS)
    assert table_keys(section(r"^`canary`$", nested=False)) == {f.name for f in fields(profiles.CanarySettings)}
    assert table_keys(section(r"^`runtime`$", nested=False)) == {f.name for f in fields(profiles.RuntimeSettings)}


def test_profile_reference_states_the_canary_defaults() -> None:
    rows = {m.group(1): line for line in section(r"^`canary`$").splitlines() if (m := KEY_ROW_RE.match(line))}
    for f in fields(profiles.CanarySettings):
        default = f.default if isinstance(f.default, str) else repr(f.default)
        assert f"`{default}`" in rows[f.name] or f'`"{default}"`' in rows[f.name], (f.name, rows[f.name])


def commands() -> set[str]:
    """Every subcommand of the parser (its public argparse structure: what `make_parser` promises)."""
    parser = make_parser()
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(subparsers) == 1
    return set(subparsers[0].choices)


@pytest.mark.parametrize("command", sorted(commands()))
def test_every_command_has_a_section_with_an_example(command: str) -> None:
    found = []
    for path, text in PAGES.items():
        for level, title, start in headings(text):
            if f"`shipyard {command}`" in title:
                found.append((path, title, page_section(text, level, start)))
    assert found, f"docs/ has no section for `shipyard {command}` (a heading like ## `shipyard {command}`)"
    assert len(found) == 1, f"`shipyard {command}` has several sections: {[(p, t) for p, t, _ in found]}"
    path, title, text = found[0]
    examples = [b for b in code_blocks(text) if f"shipyard {command}" in b or f"nox -s {command}" in b]
    assert examples, f"{path}: section {title!r} has no example of `shipyard {command}`"


def test_every_exit_code_class_is_in_the_table() -> None:
    rows: dict[str, list[str]] = {}  # code -> the class cells of its rows
    for line in section(r"^Exit codes$").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0][:1].isdigit():
            for code in cells[0].split(","):
                rows.setdefault(code.strip(), []).append(cells[1])
    classes = [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.ShipyardError) and cls.__module__ == errors.__name__
    ]
    assert len(classes) >= 12
    for cls in classes:
        cells = rows.get(str(cls.exit_code), [])
        assert any(f"`{cls.__name__}`" in cell for cell in cells), f"{cls.__name__} (exit {cls.exit_code}) missing"
    for code, cells in rows.items():  # and no class is listed under a code it does not have
        for name in re.findall(r"`(\w+)`", " ".join(cells)):
            assert getattr(errors, name).exit_code == int(code), (name, code)


def test_every_environment_variable_is_documented() -> None:
    sources = [*(ROOT / "src" / "shipyard").rglob("*.py"), ROOT / "noxfile.py"]
    sources += (ROOT / "src" / "shipyard" / "resources").glob("*.sh")
    read = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        read |= set(re.findall(r"""["'](SHIPYARD_[A-Z0-9_]*[A-Z0-9])["']""", text))  # os.environ["…"], .get("…")
        read |= set(re.findall(r"\$\{(SHIPYARD_[A-Z0-9_]+):-", text))  # shell: ${SHIPYARD_…:-default}
    assert "SHIPYARD_REGISTRY" in read and "SHIPYARD_REGISTRY_DEADLINE" in read
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", section(r"^Environment$")))
    expected = read | {"GITHUB_TOKEN", "DOCKER_HOST", "SHIPYARD_REGISTRY_USERNAME", "SHIPYARD_REGISTRY_PASSWORD"}
    assert expected <= documented, sorted(expected - documented)


def test_sites_cover_ghcr_remote_canary_and_air_gap() -> None:
    ghcr = section(r"^GHCR")
    assert "GITHUB_TOKEN" in ghcr and "--registry ghcr.io/" in ghcr
    assert "DOCKER_HOST" in section(r"^Canary on")
    air_gapped = section(r"^Air-gapped")
    assert "shipyard base" in air_gapped and "shipyard trivy-db push" in air_gapped
    assert "SHIPYARD_TRIVY_DB_REPOSITORY" in air_gapped


def test_no_registry_host_but_localhost_and_ghcr() -> None:
    texts = {"README.md": README, "mkdocs.yml": (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), **PAGES}
    texts[".github/workflows/release.yml"] = (ROOT / ".github" / "workflows" / "release.yml").read_text("utf-8")
    for name, text in texts.items():
        hosts = set(re.findall(r"\b((?:[a-z0-9-]+\.)+[a-z]{2,}|localhost)(?::\d+)?/[a-z0-9._-]+", text))
        hosts -= {h for h in hosts if h.startswith(KEY_PREFIXES)}  # label and annotation keys, not hosts
        assert hosts <= {"localhost", "ghcr.io", "github.com", "slsa.dev"}, (name, hosts)


def test_every_shipyard_command_line_in_the_docs_parses() -> None:
    """Every `shipyard …` line of a code block of the README or the manual is a command line the parser
    accepts (flags, choices)."""
    parser = make_parser()
    lines = command_lines()
    for words in lines:
        parser.parse_args(words)  # a usage error exits 2 and fails the test
    assert len(lines) >= 15


def test_the_import_rules_in_the_architecture_page_are_the_tested_ones() -> None:
    rows = {}
    for line in section(r"^Who may import whom$").splitlines():
        if m := KEY_ROW_RE.match(line):
            cells = line.strip().strip("|").split("|")
            rows[m.group(1)] = set(re.findall(r"`([\w.]+)`", cells[1]))
    assert rows == MAY_IMPORT
