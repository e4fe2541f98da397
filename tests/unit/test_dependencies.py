"""Every third-party module the package imports is a declared runtime dependency.

The test environment installs the dev extras too, so a module missing from ``[project]
dependencies`` would pass every other test and fail only in a user's (or `nox -s release`'s) venv.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_top_levels() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted((ROOT / "src" / "shipyard").rglob("*.py")):
        if "resources" in path.parts:  # files shipyard writes into a user's repo, not its own code
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], path)
    return found


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in project["dependencies"]}


def test_every_third_party_import_is_a_runtime_dependency() -> None:
    distributions = packages_distributions()
    wanted = declared()
    missing = []
    for module, path in imported_top_levels().items():
        if module == "shipyard" or module in sys.stdlib_module_names:
            continue
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        assert names, f"{path.relative_to(ROOT)}: imports {module}, which no installed distribution provides"
        if not names & wanted:
            missing.append(f"{module} ({', '.join(sorted(names))}) from {path.relative_to(ROOT)}")
    assert not missing, f"imported but not in [project] dependencies: {missing}"
