"""What a no-op build and a promotion import: never the engine's SDKs or the terminal UI.

A no-op release is a handful of registry round trips per unit; its floor is the interpreter and
these imports. rich (the live view), docker (the canary's engine API) and python-on-whales are
imported by the commands that use them, when they use them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("rich", "docker", "python_on_whales", "pydantic", "yaml")
# httpx imports its own command line (and rich with it) when click is installed, as the dev
# extras install it; a user's environment usually has neither: that import is not ours.
PRELUDE = "import sys; sys.modules['httpx._main'] = None\n"


@pytest.mark.parametrize(
    "modules",
    [
        ("shipyard.cli.build_commands", "shipyard.build.pipeline", "shipyard.build.unit"),
        ("shipyard.cli.release_commands", "shipyard.release.gates.verify"),
        ("shipyard.cli.channel_commands", "shipyard.release.channels.promote"),
    ],
    ids=["build", "verify", "promote"],
)
def test_the_no_op_paths_import_no_engine_sdk_and_no_ui(modules: tuple[str, ...]) -> None:
    code = PRELUDE + "import shipyard.cli.main\n" + "".join(f"import {m}\n" for m in modules)
    code += f"print(__import__('json').dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert loaded == [], f"{', '.join(modules)} import {loaded} at start"


def test_a_promotion_imports_no_gate_only_the_verdicts_it_reads() -> None:
    code = PRELUDE + "import shipyard.cli.main, shipyard.cli.channel_commands\n"
    code += "print(__import__('json').dumps(sorted(m for m in sys.modules if m.startswith('shipyard.release.gates'))))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert loaded == ["shipyard.release.gates", "shipyard.release.gates.verdicts"], loaded


def test_shipyard_promote_reads_its_argv_with_the_promotion_module_alone() -> None:
    """What `shipyard promote` imports up to its handler: its own verbs' module, not every verb's (the
    build side, the gates, the deploy side and yaml stay out)."""
    code = PRELUDE + "from shipyard.cli.main import read_argv\n"
    code += "verb, namespace = read_argv(['promote', '20250111-656873b3', '--channel', 'stable'])\n"
    code += "args = verb.arguments(namespace)\n"
    code += "assert verb.name == 'promote' and args.release == '20250111-656873b3', args\n"
    code += "mine = ('shipyard.build', 'shipyard.release.gates', 'shipyard.release.deploy', 'shipyard.cli')\n"
    code += f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
    code += "print(__import__('json').dumps([sorted(m for m in sys.modules if m.startswith(mine)), heavy]))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, heavy = json.loads(done.stdout)
    assert heavy == [], heavy
    assert not [m for m in loaded if m.startswith(("shipyard.build", "shipyard.release.deploy"))], loaded
    assert [m for m in loaded if m.startswith("shipyard.release.gates")] == [
        "shipyard.release.gates",
        "shipyard.release.gates.verdicts",
    ], loaded
    verbs = {m for m in loaded if m.endswith(("_commands", "_command", ".completion"))}
    assert verbs == {"shipyard.cli.channel_commands"}, loaded
