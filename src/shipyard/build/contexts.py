"""Named build contexts prepared on the host: the wheelhouse and the tools (tini).

Builds never reach the network. Wheels are downloaded here, once, against the hash-pinned
lock and for the *base's* Python and platform (not the host's), into a directory that
holds exactly that lock's wheels, so BuildKit's cache key for the mount changes only
when the lock does. Likewise a foreign platform's tini-static: Debian's, fetched once.
"""

from __future__ import annotations

import hashlib
import os
import platform as host_platform
import shutil
import tarfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, EngineError
from ..runner import Runner
from .base import DEBIAN_ARCH_BY_PLATFORM, host_debian_sources

ARCH_BY_PLATFORM = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
MANYLINUX = ("manylinux_2_28", "manylinux_2_17", "manylinux2014")
TINI_STATIC = Path("/usr/bin/tini-static")
TOOLS_SUITE = "bookworm"  # the Debian release a foreign platform's tini-static comes from
ELF_MACHINE = {"x86_64": 0x3E, "aarch64": 0xB7}  # e_machine of each arch's programs
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# pip settings of this host (extra indexes, local find-links, constraints) must not leak
# into a hash-pinned download.
_PIP_ENV_DROPPED = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")
_TOOLS_LOCK = threading.Lock()


def pip_target_args(python_version: str, platform: str) -> list[str]:
    arch = ARCH_BY_PLATFORM[platform]
    abi = "cp" + python_version.replace(".", "")
    args = [
        "--only-binary=:all:",
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--abi",
        abi,
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for tag in MANYLINUX:
        args += ["--platform", f"{tag}_{arch}"]
    return args


@dataclass
class Wheelhouse:
    cache_dir: Path
    runner: Runner

    def key(self, lock: Path, python_version: str, platform: str) -> str:
        h = hashlib.sha256(lock.read_bytes())
        h.update(f"\0{python_version}\0{platform}".encode())
        return h.hexdigest()[:16]

    def directory(self, lock: Path, python_version: str, platform: str) -> Path:
        tag = f"cp{python_version.replace('.', '')}-{ARCH_BY_PLATFORM[platform]}"
        return self.cache_dir / "wheels" / tag / self.key(lock, python_version, platform)

    def prepare(self, lock: Path, python_version: str, platform: str) -> tuple[Path, bool]:
        """The directory with exactly the wheels of ``lock``; True when it was downloaded now."""
        target = self.directory(lock, python_version, platform)
        if (target / ".complete").is_file():
            return target, False
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k not in _PIP_ENV_DROPPED}
        env["PIP_CONFIG_FILE"] = os.devnull
        argv = [
            "python3",
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--disable-pip-version-check",
            "-d",
            str(partial),
            "-r",
            str(lock),
            *pip_target_args(python_version, platform),
        ]
        if "PIP_CERT" not in env and SYSTEM_CA_BUNDLE.is_file():
            argv += ["--cert", str(SYSTEM_CA_BUNDLE)]
        self.runner.run(argv, env=env)
        if not self.runner.dry_run:
            (partial / ".complete").write_text(lock.name + "\n")
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
        return target, True

    def prepare_all(self, lock: Path, python_version: str, platforms: tuple[str, ...]) -> Path:
        """The wheels of ``lock`` for every platform of a profile, in one directory (pip in each platform's
        build step picks its own); for one platform, ``prepare``'s directory itself."""
        dirs = [self.prepare(lock, python_version, platform)[0] for platform in platforms]
        if len(dirs) == 1:
            return dirs[0]
        key = hashlib.sha256("\0".join(d.name for d in dirs).encode()).hexdigest()[:16]
        merged = self.cache_dir / "wheels" / f"cp{python_version.replace('.', '')}-multi" / key
        if (merged / ".complete").is_file() or self.runner.dry_run:
            return merged
        partial = merged.with_name(merged.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for directory in dirs:
            for wheel in directory.glob("*.whl"):
                if not (partial / wheel.name).exists():  # a pure wheel is the same file for every platform
                    shutil.copy2(wheel, partial / wheel.name)
        (partial / ".complete").write_text(lock.name + "\n")
        shutil.rmtree(merged, ignore_errors=True)
        partial.rename(merged)
        return merged


def prepare_tools(cache_dir: Path, platforms: str | Sequence[str], *, runner: Runner | None = None) -> Path:
    """A context with ``tini-static`` for the profile's platform(s) (from Debian's ``tini``).

    One platform: ``tools/<arch>/tini-static``; for the host's arch that is the host's own file, the
    bytes and path every single-platform build has hashed into its inputs. Several platforms:
    ``tools/multi-<arch>-<arch>/<os>_<arch>/tini-static``, which a Dockerfile reaches with
    ``${TARGETOS}_${TARGETARCH}``. A foreign arch's file comes from Debian's ``tini`` for that arch,
    fetched once into the cache with mmdebstrap through ``runner`` (only then is a runner needed).
    """
    wanted = _tool_platforms(platforms)
    with _TOOLS_LOCK:  # units of one build prepare their tools from parallel threads
        if len(wanted) == 1:
            tools = cache_dir / "tools" / ARCH_BY_PLATFORM[wanted[0]]
            _install(tools / "tini-static", _tini_static(cache_dir, wanted[0], runner))
            return tools
        tools = cache_dir / "tools" / "-".join(["multi", *(ARCH_BY_PLATFORM[p] for p in wanted)])
        for platform in wanted:
            _install(tools / platform.replace("/", "_") / "tini-static", _tini_static(cache_dir, platform, runner))
        return tools


def _tool_platforms(platforms: str | Sequence[str]) -> list[str]:
    """The platforms as one sorted list without repeats: the directory depends on the set, not its order."""
    wanted = sorted({platforms} if isinstance(platforms, str) else set(platforms))
    if not wanted:
        raise ConfigError("the tools context needs at least one platform; give the profile a platform")
    for platform in wanted:
        if platform not in ARCH_BY_PLATFORM:
            raise ConfigError(
                f"platform {platform}: shipyard has no tini-static for it; use one of {', '.join(ARCH_BY_PLATFORM)}"
            )
    return wanted


def _tini_static(cache_dir: Path, platform: str, runner: Runner | None) -> bytes | None:
    """The host's tini-static for the host's arch, Debian's for another (None: a dry run fetched nothing)."""
    if ARCH_BY_PLATFORM[platform] != host_platform.machine():
        return _debian_tini_static(cache_dir, platform, runner)
    if not TINI_STATIC.is_file():
        raise EngineError(f"{TINI_STATIC} is missing: install Debian's tini package (scripts/up.sh does)")
    return TINI_STATIC.read_bytes()


def _debian_tini_static(cache_dir: Path, platform: str, runner: Runner | None) -> bytes | None:
    """``usr/bin/tini-static`` of Debian's ``tini`` for ``platform``, fetched once into ``tools/debian/<arch>``."""
    arch = DEBIAN_ARCH_BY_PLATFORM[platform]
    cached = cache_dir / "tools" / "debian" / arch / "tini-static"
    if cached.is_file():
        return cached.read_bytes()
    if runner is None:
        raise EngineError(
            f"platform {platform}: Debian's tini for {arch} is not in {cached.parent} yet and there is no "
            f"runner to fetch it with; call prepare_tools(..., runner=...)"
        )
    sources = host_debian_sources(TOOLS_SUITE)
    if not sources:
        raise EngineError(
            f"no apt source for Debian {TOOLS_SUITE} on this host (/etc/apt/sources.list.d/debian.sources or "
            f"/etc/apt/sources.list); mmdebstrap needs a mirror to fetch tini for {arch}"
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    archive = cached.parent / f"tini-{os.getpid()}.tar"
    argv = ["mmdebstrap", "--quiet", "--variant=extract", f"--arch={arch}", "--include=tini", "--format=tar"]
    runner.run([*argv, TOOLS_SUITE, str(archive), *sources])
    if runner.dry_run:
        return None
    try:
        data = _tar_member(archive, "usr/bin/tini-static")
    finally:
        archive.unlink(missing_ok=True)
    if _elf_machine(data) != ELF_MACHINE[ARCH_BY_PLATFORM[platform]]:
        raise EngineError(
            f"the tini-static fetched for {arch} is not an {ARCH_BY_PLATFORM[platform]} program; "
            f"check the {TOOLS_SUITE} mirror in the host's apt sources"
        )
    _install(cached, data)
    return data


def _tar_member(archive: Path, name: str) -> bytes:
    with tarfile.open(archive) as tar:
        for member in tar:
            if os.path.normpath(member.name) == name and member.isfile():
                extracted = tar.extractfile(member)
                if extracted is not None:
                    return extracted.read()
    raise EngineError(f"{archive}: no {name} in what mmdebstrap extracted; is Debian's tini package complete?")


def _elf_machine(data: bytes) -> int | None:
    """``e_machine`` of a little-endian ELF file (0x3E x86-64, 0xB7 AArch64); None when it is none."""
    if data[:4] != b"\x7fELF" or len(data) < 20:
        return None
    return int.from_bytes(data[18:20], "little")


def _install(dest: Path, data: bytes | None) -> None:
    """Write ``data`` to ``dest`` only when it differs, atomically (a build may be hashing the directory)."""
    if data is None or (dest.is_file() and dest.read_bytes() == data):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
