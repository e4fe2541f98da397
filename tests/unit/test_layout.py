"""The package's rooms and the one direction data flows between them, read from the code itself.

Every ``import`` of a shipyard module in ``src/shipyard`` is checked against ``MAY_IMPORT``: a room
lists the rooms it may use, so an upward import (the build reaching into the release, the registry
protocol into shipyard's policy, anything into the CLI) fails here with the file, the line and the
rule. Printing is the CLI's alone: elsewhere ``print`` and ``sys.stdout``/``sys.stderr`` fail too. A
verb's handler takes its typed arguments: a function annotated to take ``argparse.Namespace`` fails,
but where the arguments are made from it (cli/verb.py). Verdicts are signed in one place: only
``release/gates/gate.py`` calls ``attest_gate``/``attest_models``, and the gates' modules import each
other in one direction (no cycle), the gate module above them all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "shipyard"
DATA = "resources"  # files shipyard runs or writes (up.sh, templates, init's scaffold): not its own modules

# every room may raise shipyard's errors, emit events, read __version__ and the schema of what it writes
BASE = {"errors", "events", "package", "versions"}
TOOLS = BASE | {"runner", "dag", "state"}
# room -> the rooms it may import besides itself
MAY_IMPORT: dict[str, set[str]] = {
    "package": set(),  # shipyard/__init__.py: the version
    "__main__": {"package", "cli"},  # `python -m shipyard`
    "errors": {"package"},
    "versions": {"package", "errors"},  # which shipyard wrote a document, and of which schema
    "events": {"package"},
    "runner": BASE,
    "dag": BASE,
    "state": BASE,  # the project's .shipyard/ folder
    "oci": BASE,  # the registry protocol: nothing of shipyard above it
    "config": TOOLS | {"oci"},
    "verdicts": BASE,  # the gates' typed verdicts, as the record stores them
    "record": BASE | {"oci", "state", "verdicts"},
    "preflight": TOOLS | {"oci", "config"},
    "build": TOOLS | {"oci", "config", "record", "verdicts", "preflight"},  # never release/, report/ or cli/
    "release": TOOLS | {"oci", "config", "record", "verdicts", "build"},  # reads what the build made; never cli/
    "report": BASE | {"oci", "config", "record", "verdicts", "release", "state"},  # never cli/
    "cli": TOOLS | {"oci", "config", "record", "verdicts", "preflight", "build", "release", "report"},
}
PRINTS = {"cli"}  # the only room that talks to a person
# a handler takes its verb's typed arguments; argparse's Namespace stays where it is read (cli/verb.py)
NAMESPACE_READERS = {"shipyard.cli.verb"}
SIGNS = {"shipyard.release.gates.gate"}  # the one module that signs a gate's verdicts
SIGNING = {"attest_gate", "attest_models"}
GATES = "shipyard.release.gates"


def room_of(module: str) -> str:
    """``shipyard.release.gates.scan`` -> ``release``; ``shipyard.record`` -> ``record``."""
    parts = module.split(".")
    return "package" if len(parts) == 1 else parts[1]


def module_of(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """The absolute names of the shipyard modules an import statement reaches."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    if target == "shipyard":  # `from shipyard import errors` names modules
        yield from (f"shipyard.{alias.name}" if alias.name != "__version__" else "shipyard" for alias in node.names)
    else:
        yield target


@dataclass(frozen=True)
class Violation:
    path: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _prints(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
        return "print()"
    if (
        isinstance(node, ast.Attribute)
        and node.attr in ("stdout", "stderr")
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ):
        return f"sys.{node.attr}"
    return None


def _namespace(node: ast.FunctionDef) -> str | None:
    """The parameter annotated ``argparse.Namespace`` (or ``Namespace``), if any."""
    for arg in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs):
        if arg.annotation is not None and ast.unparse(arg.annotation).split(".")[-1].strip("'\"") == "Namespace":
            return arg.arg
    return None


def violations(package: Path) -> list[Violation]:
    found = []
    for path in sorted(p for p in package.rglob("*.py") if p.relative_to(package).parts[0] != DATA):
        module = module_of(path, package)
        room = room_of(module)
        allowed = MAY_IMPORT.get(room)
        if allowed is None:
            found.append(Violation(path, 1, f"{module} is in no room of MAY_IMPORT: add its room or move it"))
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in imported(node, module, path.name == "__init__.py"):
                    if not (target == "shipyard" or target.startswith("shipyard.")):
                        continue
                    other = room_of(target)
                    if other != room and other not in allowed:
                        found.append(
                            Violation(
                                path,
                                node.lineno,
                                f"{module} imports {target}: {room}/ may import only "
                                f"{', '.join(sorted(allowed - {'package'}))}",
                            )
                        )
            elif isinstance(node, ast.FunctionDef) and module not in NAMESPACE_READERS and (arg := _namespace(node)):
                found.append(
                    Violation(
                        path,
                        node.lineno,
                        f"{node.name}({arg}: Namespace): a handler takes its verb's typed arguments (a frozen "
                        f"dataclass, cli/verb.py), never argparse.Namespace",
                    )
                )
            elif room not in PRINTS and (how := _prints(node)):
                found.append(Violation(path, node.lineno, f"{how} outside cli/: emit an event, the CLI shows it"))
            elif module not in SIGNS and (name := _signs(node)):
                found.append(Violation(path, node.lineno, f"{module} calls {name}: only {', '.join(SIGNS)} signs "
                                       "verdicts (run the gate through run_gate)"))  # fmt: skip
    return found + _cycles(package)


def _signs(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    return name if name in SIGNING else None


def _cycles(package: Path) -> list[Violation]:
    """The gates' modules import each other in one direction: a cycle among them is named with its path."""
    edges: dict[str, dict[str, int]] = {}
    paths: dict[str, Path] = {}
    for path in sorted((package / "release" / "gates").glob("*.py")):
        module = module_of(path, package)
        paths[module] = path
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in imported(node, module, path.name == "__init__.py"):
                    if target.startswith(GATES + ".") and target != module:
                        edges.setdefault(module, {}).setdefault(target, node.lineno)
    found: list[Violation] = []

    def visit(module: str, stack: list[str]) -> None:
        for target, line in edges.get(module, {}).items():
            if target in stack:
                cycle = [*stack[stack.index(target) :], module, target]
                if frozenset(cycle) not in seen:  # each cycle once
                    seen.add(frozenset(cycle))
                    found.append(Violation(paths[module], line, f"import cycle in gates: {' -> '.join(cycle)}"))
            elif target in edges and target not in done:
                visit(target, [*stack, module])
        done.add(module)

    done: set[str] = set()
    seen: set[frozenset[str]] = set()
    for module in sorted(edges):
        if module not in done:
            visit(module, [])
    return found


def test_every_import_follows_the_rooms_and_only_the_cli_prints() -> None:
    assert PACKAGE.is_dir()
    problems = violations(PACKAGE)
    assert not problems, "\n".join(map(str, problems))


def test_every_module_says_what_its_room_is_for() -> None:
    missing = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] != DATA
        and not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not missing, f"modules without a docstring: {missing}"


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "shipyard"
    for name, text in {"__init__.py": "", "errors.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"build/__init__.py": "", "build/unit.py": "from ..release.gates import verify\n"},
            "build/unit.py:1: shipyard.build.unit imports shipyard.release.gates: build/ may import only",
        ),
        (
            {"oci/__init__.py": "", "oci/client.py": "from shipyard.config.registry import parse_registry\n"},
            "oci/client.py:1: shipyard.oci.client imports shipyard.config.registry: oci/ may import only errors, "
            "events",
        ),
        (
            {"report/__init__.py": "", "report/html.py": "def f():\n    from ..cli import console\n"},
            "report/html.py:2: shipyard.report.html imports shipyard.cli: report/ may import only",
        ),
        (
            {"release/__init__.py": "", "release/canary.py": "import sys\nsys.stderr.write('hi')\n"},
            "release/canary.py:2: sys.stderr outside cli/",
        ),
        ({"record.py": "print('done')\n"}, "record.py:1: print() outside cli/"),
        (
            {
                "cli/__init__.py": "",
                "cli/deploy_commands.py": "import argparse\n\n"
                "def cmd_deploy(args: argparse.Namespace, c: object) -> int:\n    return 0\n",
            },
            "cli/deploy_commands.py:3: cmd_deploy(args: Namespace): a handler takes its verb's typed arguments",
        ),
        (
            {
                "cli/__init__.py": "",
                "cli/release_commands.py": "from ..release.gates.verdicts import attest_gate\n"
                "attest_gate(registry, key, record, 'scan', {}, emit)\n",
            },
            "cli/release_commands.py:2: shipyard.cli.release_commands calls attest_gate: only "
            "shipyard.release.gates.gate signs verdicts",
        ),
        (
            {
                "release/__init__.py": "",
                "release/gates/__init__.py": "",
                "release/gates/verify.py": "def f(v):\n    v.attest_models(1)\n",
            },
            "release/gates/verify.py:2: shipyard.release.gates.verify calls attest_models",
        ),
        (
            {
                "release/__init__.py": "",
                "release/gates/__init__.py": "",
                "release/gates/checks.py": "from .verify import Verifier\n",
                "release/gates/verify.py": "from .checks import CHECKS\n",
            },
            "release/gates/verify.py:1: import cycle in gates: shipyard.release.gates.checks -> "
            "shipyard.release.gates.verify -> shipyard.release.gates.checks",
        ),
        ({"stray.py": ""}, "shipyard.stray is in no room of MAY_IMPORT"),
    ],
)
def test_a_planted_violation_is_named_with_its_file_line_and_rule(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    found = [str(v) for v in violations(_plant(tmp_path, files))]
    assert any(expected in line for line in found), found


def test_allowed_imports_are_not_reported(tmp_path: Path) -> None:
    package = _plant(
        tmp_path,
        {
            "build/__init__.py": "",
            "build/unit.py": "from ..oci.client import RegistryClient\nfrom ..errors import BuildError\n",
            "cli/__init__.py": "",
            "cli/main.py": "import sys\nfrom ..build import unit\nprint('ok', file=sys.stderr)\n",
        },
    )
    assert violations(package) == []
