from __future__ import annotations

import io
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shipyard.build import contexts
from shipyard.build.contexts import Wheelhouse, pip_target_args, prepare_tools
from shipyard.build.inputs import directory_hash
from shipyard.errors import ConfigError, EngineError
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


# --- tools (tini-static) ---------------------------------------------------------------------------------------
def elf(machine: int) -> bytes:
    """The first bytes of a little-endian 64-bit ELF program for ``machine`` (0x3E x86-64, 0xB7 AArch64)."""
    return b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little") + b"rest of the program"


HOST_TINI = elf(0x3E)
ARM_TINI = elf(0xB7)


class FakeMmdebstrap(Runner):
    """mmdebstrap --variant=extract, offline: writes a tar with Debian's tini layout at the output path."""

    def __init__(self, payload: bytes = ARM_TINI, *, dry_run: bool = False) -> None:
        super().__init__(dry_run=dry_run)
        self.payload = payload

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:
        argv = [str(a) for a in argv]
        self.history.append(argv)
        if self.dry_run:
            return Completed(argv, 0, "")
        assert argv[0] == "mmdebstrap"
        suite = argv.index("bookworm")
        with tarfile.open(argv[suite + 1], "w") as tar:
            for name, data in (("./usr/bin/tini", b"dynamic"), ("./usr/bin/tini-static", self.payload)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return Completed(argv, 0, "")


@pytest.fixture
def x86_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An x86_64 host with Debian's tini installed (its tini-static at a path of the test's own)."""
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    host_tini = tmp_path / "host-tini-static"
    host_tini.write_bytes(HOST_TINI)
    monkeypatch.setattr(contexts, "TINI_STATIC", host_tini)
    monkeypatch.setattr(contexts, "host_debian_sources", lambda suite: [f"deb http://mirror.test/debian {suite} main"])
    return tmp_path / "cache"


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_the_host_platform_alone_is_the_context_it_always_was(x86_host: Path, tmp_path: Path) -> None:
    """Same path, same single file, same bytes: the input digest of every existing single-platform build holds."""
    before = tmp_path / "before" / "tools" / "x86_64"  # what prepare_tools(cache, "linux/amd64") made until now
    before.mkdir(parents=True)
    (before / "tini-static").write_bytes(HOST_TINI)
    for platforms in ("linux/amd64", ["linux/amd64"], ("linux/amd64",)):
        tools = prepare_tools(x86_host, platforms)  # no runner: nothing to fetch
        assert tools == x86_host / "tools" / "x86_64"
        assert files_of(tools) == {"tini-static": HOST_TINI}
        assert directory_hash(tools) == directory_hash(before)


def test_several_platforms_get_one_directory_per_target_os_and_arch(x86_host: Path) -> None:
    runner = FakeMmdebstrap()
    tools = prepare_tools(x86_host, ["linux/amd64", "linux/arm64"], runner=runner)
    assert tools == x86_host / "tools" / "multi-x86_64-aarch64"
    # what `COPY --from=tools ${TARGETOS}_${TARGETARCH}/tini-static` reaches, and nothing else
    assert files_of(tools) == {"linux_amd64/tini-static": HOST_TINI, "linux_arm64/tini-static": ARM_TINI}
    (argv,) = runner.history
    assert argv[:7] == ["mmdebstrap", "--quiet", "--variant=extract", "--arch=arm64", "--include=tini"] + [
        "--format=tar",
        "bookworm",
    ]
    assert argv[8:] == ["deb http://mirror.test/debian bookworm main"]
    again = prepare_tools(x86_host, ("linux/arm64", "linux/amd64"), runner=runner)
    assert again == tools and len(runner.history) == 1  # fetched once; the set, not its order, names it
    assert prepare_tools(x86_host, "linux/amd64") == x86_host / "tools" / "x86_64"  # single-platform one untouched


def test_a_foreign_platform_alone_gets_debians_tini_for_it(x86_host: Path) -> None:
    runner = FakeMmdebstrap()
    tools = prepare_tools(x86_host, "linux/arm64", runner=runner)
    assert tools == x86_host / "tools" / "aarch64" and files_of(tools) == {"tini-static": ARM_TINI}
    assert not list((x86_host / "tools" / "debian" / "arm64").glob("*.tar"))  # the fetched tar is gone
    assert prepare_tools(x86_host, ["linux/arm64"]) == tools  # cached: no runner needed any more


def test_a_foreign_platform_without_a_runner_says_what_to_pass(x86_host: Path) -> None:
    with pytest.raises(EngineError, match=r"linux/arm64: Debian's tini for arm64 .* runner=") as caught:
        prepare_tools(x86_host, ["linux/amd64", "linux/arm64"])
    assert "\n" not in str(caught.value)


def test_fetched_tini_of_the_wrong_arch_is_refused(x86_host: Path) -> None:
    with pytest.raises(EngineError, match="not an aarch64 program"):
        prepare_tools(x86_host, "linux/arm64", runner=FakeMmdebstrap(payload=HOST_TINI))
    assert not (x86_host / "tools" / "debian" / "arm64" / "tini-static").exists()


def test_a_dry_run_fetches_nothing(x86_host: Path) -> None:
    runner = FakeMmdebstrap(dry_run=True)
    tools = prepare_tools(x86_host, ["linux/amd64", "linux/arm64"], runner=runner)
    assert runner.history[0][0] == "mmdebstrap" and files_of(tools) == {"linux_amd64/tini-static": HOST_TINI}


@pytest.mark.parametrize("platforms", [[], "linux/s390x", ["linux/amd64", "linux/riscv64"]])
def test_platforms_without_a_tini_are_config_errors(x86_host: Path, platforms: str | list[str]) -> None:
    with pytest.raises(ConfigError):
        prepare_tools(x86_host, platforms)
