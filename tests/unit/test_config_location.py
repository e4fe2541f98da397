"""Config errors carry the file and line they are about (for annotations); their messages are unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config.catalog import load_catalog
from shipyard.config.profiles import load_profiles
from shipyard.config.reader import load_document, locate
from shipyard.errors import ConfigError
from tests.conftest import make_project

JSON = """{
  "name": "pc2",
  "build_args": {
    "name": "not this one",
    "CUDA_ARCH": 8.6
  },
  "env": {"OMP_NUM_THREADS": "8"}
}
"""
TOML = """[project]
name = "demo"

[images.family-web]
kind = "family"
parent = "base-python"

[images.svc]
parent = "family-web"
build_secrets = ["A"]
"""


@pytest.mark.parametrize(
    ("text", "path", "line"),
    [
        (JSON, "build_args.CUDA_ARCH", 5),
        (JSON, "build_args", 3),
        (JSON, "name", 2),
        (JSON, "env.OMP_NUM_THREADS", 7),
        (JSON, "build_args.MISSING", 3),  # a missing key: its table's line
        (JSON, "nowhere", None),
        (TOML, "images.svc.parent", 9),
        (TOML, "images.family-web.parent", 6),
        (TOML, "images.svc.build_secrets[0]", 10),
        (TOML, "project.name", 2),
    ],
)
def test_locate(text: str, path: str, line: int | None) -> None:
    assert locate(text, path) == line


def test_profile_errors_name_file_and_line(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", profiles=("pc2",))
    path = root / "profiles" / "pc2.json"
    path.write_text(path.read_text().replace('"8.6"', "8.6"))
    with pytest.raises(ConfigError) as err:
        load_profiles(root / "profiles", root=root)
    assert str(err.value) == "profiles/pc2.json: build_args.TORCH_CUDA_ARCH_LIST: expected a string, got 8.6"
    expected = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "TORCH_CUDA_ARCH_LIST" in text)
    assert (err.value.file, err.value.line) == ("profiles/pc2.json", expected)


def test_catalog_errors_name_file_and_line(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    catalog = root / "shipyard.toml"
    catalog.write_text(catalog.read_text().replace('parent = "family-web"', 'parent = "family-wbe"', 1))
    with pytest.raises(ConfigError) as err:
        load_catalog(root)
    expected = next(n for n, text in enumerate(catalog.read_text().splitlines(), 1) if "family-wbe" in text)
    assert err.value.file == "shipyard.toml" and err.value.line == expected
    assert "unknown image 'family-wbe' (did you mean 'family-web'?)" in str(err.value)


def test_syntax_errors_name_their_line(tmp_path: Path) -> None:
    broken = tmp_path / "x.json"
    broken.write_text('{\n  "a": 1,\n  "b": \n}\n')
    with pytest.raises(ConfigError) as err:
        load_document(broken, display="x.json")
    assert (err.value.file, err.value.line) == ("x.json", 4)
    bad_toml = tmp_path / "x.toml"
    bad_toml.write_text("[a]\nb = 1\nc = = 2\n")
    with pytest.raises(ConfigError) as err:
        load_document(bad_toml, display="x.toml")
    assert (err.value.file, err.value.line) == ("x.toml", 3)
