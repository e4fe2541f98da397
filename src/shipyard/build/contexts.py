"""Named build contexts prepared on the host: the wheelhouse and the tools (tini).

Builds never reach the network. Wheels are downloaded here, once, against the hash-pinned
lock and for the *base's* Python and platform (not the host's), into a directory that
holds exactly that lock's wheels, so BuildKit's cache key for the mount changes only
when the lock does.
"""

from __future__ import annotations

import hashlib
import os
import platform as host_platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, EngineError
from ..runner import Runner

ARCH_BY_PLATFORM = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
MANYLINUX = ("manylinux_2_28", "manylinux_2_17", "manylinux2014")
TINI_STATIC = Path("/usr/bin/tini-static")
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# pip settings of this host (extra indexes, local find-links, constraints) must not leak
# into a hash-pinned download.
_PIP_ENV_DROPPED = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")


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


def prepare_tools(cache_dir: Path, platform: str) -> Path:
    """A context with ``tini-static`` for the profile's platform (from Debian's ``tini``)."""
    want = ARCH_BY_PLATFORM[platform]
    if host_platform.machine() != want:
        raise ConfigError(
            f"platform {platform}: this host ({host_platform.machine()}) has no tini-static "
            f"for it; build this profile on a {want} host or builder"
        )
    if not TINI_STATIC.is_file():
        raise EngineError(f"{TINI_STATIC} is missing: install Debian's tini package (scripts/up.sh does)")
    tools = cache_dir / "tools" / want
    dest = tools / "tini-static"
    data = TINI_STATIC.read_bytes()
    if not dest.is_file() or dest.read_bytes() != data:
        tools.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
    return tools
