"""The README stays true to the code: config keys, commands, exit codes, environment, the quick start.

Keys and commands are read from the parsers themselves, so a key or a command added to the code
without a line in the README fails here, and so does a README row for a key the code refuses.
"""

from __future__ import annotations

import inspect
import re
import shlex
from dataclasses import fields
from pathlib import Path

import pytest

from shipyard import errors
from shipyard.cli.main import COMMANDS
from shipyard.cli.parser import make_parser
from shipyard.config import catalog, models, policy, profiles, targets
from shipyard.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*$")
KEY_ROW_RE = re.compile(r"^\|\s*`([^`]+)`\s*\|")


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


def headings() -> list[tuple[int, str, int]]:
    """(level, title, line index) of every Markdown heading."""
    found = []
    for i, (line, fenced) in enumerate(lines_outside_code(README)):
        if not fenced and (m := HEADING_RE.match(line)):
            found.append((len(m.group(1)), m.group(2), i))
    return found


def section(title: str, *, nested: bool = True) -> str:
    """The text under the first heading matching ``title`` (a regex), up to the next heading of the same
    or a higher level (with ``nested=False``: up to any heading)."""
    lines = README.splitlines()
    all_headings = headings()
    for n, (level, text, start) in enumerate(all_headings):
        if re.search(title, text):
            end = len(lines)
            for next_level, _, index in all_headings[n + 1 :]:
                if not nested or next_level <= level:
                    end = index
                    break
            return "\n".join(lines[start + 1 : end])
    raise AssertionError(f"README.md has no heading matching {title!r}")


def table_keys(text: str) -> set[str]:
    """The backticked first cells of a section's table rows: the keys it documents."""
    return {m.group(1) for line in text.splitlines() if (m := KEY_ROW_RE.match(line))}


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def allowed_keys(tmp_path: Path, toml: str) -> set[str]:
    """The keys the catalog parser allows where ``toml`` puts an unknown key, from its own error."""
    (tmp_path / catalog.CATALOG_FILE).write_text(toml)
    with pytest.raises(ConfigError) as error:
        catalog.load_catalog(tmp_path)
    return set(str(error.value).rsplit("allowed: ", 1)[1].split(", "))


def test_quick_start_is_exactly_two_commands() -> None:
    blocks = code_blocks(section(r"^Quick start$"))
    assert blocks, "the Quick start has no code block"
    commands = [line for line in blocks[0].splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2, commands
    assert commands[0].startswith("python3 -m pip install nox") and commands[0].endswith("nox -s release"), commands
    assert commands[1] == "nox -s tests"


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
    parser = make_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(COMMANDS) | set(sub.choices or ())


@pytest.mark.parametrize("command", sorted(commands()))
def test_every_command_has_a_section_with_an_example(command: str) -> None:
    for _, title, _ in headings():
        plain = re.sub(r"[`*]", "", title).strip().lower()
        if f"`shipyard {command}`" in title or plain == command:
            text = section(re.escape(title))
            examples = [b for b in code_blocks(text) if f"shipyard {command}" in b or f"nox -s {command}" in b]
            assert examples, f"README section {title!r} has no example of `shipyard {command}`"
            return
    pytest.fail(f"README.md has no section for `shipyard {command}` (a heading like ### `shipyard {command}`)")


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
    for path in (ROOT / "README.md", ROOT / ".github" / "workflows" / "release.yml"):
        text = path.read_text(encoding="utf-8")
        hosts = set(re.findall(r"\b((?:[a-z0-9-]+\.)+[a-z]{2,}|localhost)(?::\d+)?/[a-z0-9._-]+", text))
        hosts -= {h for h in hosts if h.startswith(("org.opencontainers.", "io.shipyard."))}  # label keys
        assert hosts <= {"localhost", "ghcr.io", "github.com", "slsa.dev"}, (path.name, hosts)


def test_every_shipyard_command_line_in_the_readme_parses() -> None:
    """Every `shipyard …` line of a code block is a command line the parser accepts (flags, choices)."""
    parser = make_parser()
    checked = 0
    for block in code_blocks(README):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()  # a trailing comment
            for part in re.split(r"\s(?:&&|\||>)\s", line):
                words = shlex.split(part) if part else []
                while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value shipyard …
                    words.pop(0)
                if words[:1] == ["shipyard"]:
                    parser.parse_args(words[1:])  # a usage error exits 2 and fails the test
                    checked += 1
    assert checked >= 15
