from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shipyard.build.contexts import Wheelhouse, pip_target_args
from shipyard.runner import Completed, Runner


class FakePip(Runner):
    def __init__(self) -> None:
        super().__init__()
        self.envs: list[dict[str, str]] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:  # type: ignore[override]
        argv = [str(a) for a in argv]
        self.history.append(argv)
        self.envs.append(dict(kwargs["env"]))
        dest = Path(argv[argv.index("-d") + 1])
        (dest / "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"wheel")
        return Completed(argv, 0, "")


def test_target_args_are_for_the_base_not_the_host() -> None:
    args = pip_target_args("3.12", "linux/arm64")
    assert args[:9] == [
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--abi",
        "cp312",
        "--abi",
        "abi3",
    ]
    assert "manylinux_2_17_aarch64" in args and not any("x86_64" in a for a in args)


def test_downloads_once_per_lock_python_and_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_CONSTRAINT", "/etc/constraints.txt")
    lock = tmp_path / "requirements.lock"
    lock.write_text("numpy==2.2.6 --hash=sha256:" + "a" * 64 + "\n")
    pip = FakePip()
    house = Wheelhouse(tmp_path / "cache", pip)
    first, fetched = house.prepare(lock, "3.11", "linux/amd64")
    assert fetched and (first / "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.whl").is_file()
    argv = pip.history[0]
    assert argv[:4] == ["python3", "-m", "pip", "download"] and "--require-hashes" in argv and "--no-deps" in argv
    assert "PIP_FIND_LINKS" not in pip.envs[0] and "PIP_CONSTRAINT" not in pip.envs[0]
    assert pip.envs[0]["PIP_CONFIG_FILE"]
    again, fetched_again = house.prepare(lock, "3.11", "linux/amd64")
    assert (again, fetched_again) == (first, False) and len(pip.history) == 1
    other, _ = house.prepare(lock, "3.12", "linux/amd64")
    assert other != first and len(pip.history) == 2
    lock.write_text(lock.read_text() + "# changed\n")
    assert house.prepare(lock, "3.11", "linux/amd64")[0] != first
