"""up.sh's registry config: deletes enabled (prune), rewritten when an older one is on disk, left alone when equal.

Only the two config functions run, in a scratch state directory: no registry is started or stopped."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

UP = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "resources" / "up.sh"


def config_functions() -> str:
    text = UP.read_text()
    return "\n".join(re.findall(r"(?ms)^(?:registry_config|write_registry_config)\(\) \{.*?^\}", text))


def write(state: Path) -> bool:
    script = f"set -euo pipefail\nSTATE_DIR={state}\nREGISTRY_ADDR=127.0.0.1:5999\n{config_functions()}\n"
    script += f"write_registry_config {state / 'registry.yml'}"
    return subprocess.run(["bash", "-c", script], check=False).returncode == 0


def test_an_old_config_is_rewritten_with_deletes_enabled_and_an_equal_one_is_left_alone(tmp_path: Path) -> None:
    cfg = tmp_path / "registry.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/registry\n")
    assert write(tmp_path) is True
    text = cfg.read_text()
    assert "  delete:\n    enabled: true\n" in text and f"rootdirectory: {tmp_path}/registry" in text
    assert "addr: 127.0.0.1:5999" in text
    before = cfg.stat().st_mtime_ns
    assert write(tmp_path) is False and cfg.stat().st_mtime_ns == before and cfg.read_text() == text
