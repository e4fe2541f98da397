"""Machine profiles: one JSON file per target machine class in ``profiles/``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

from ..errors import ConfigError
from .reader import Table, load_document

LOCAL_PREFIX = "local:"
PLATFORM_RE = re.compile(r"^linux/(amd64|arm64)$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PINNED_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(:[\w][\w.-]{0,127})?@sha256:[0-9a-f]{64}$")
PYTHON_RE = re.compile(r"^3\.\d{1,2}$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SECRET_WORDS = ("TOKEN", "PASSWORD", "SECRET", "KEY", "CREDENTIAL")


@dataclass(frozen=True)
class BaseImage:
    """A profile's base for one role: a pinned upstream reference or a local base by name."""

    ref: str

    @property
    def is_local(self) -> bool:
        return self.ref.startswith(LOCAL_PREFIX)

    @property
    def local_name(self) -> str:
        return self.ref.removeprefix(LOCAL_PREFIX)


@dataclass(frozen=True)
class CanarySettings:
    memory: str = "512m"
    cpus: float = 1.0
    pids: int = 256
    requests: int = 20


@dataclass(frozen=True)
class RuntimeSettings:
    """The live deployment's limits (``canary`` holds the canary's): per container, and Swarm replicas."""

    memory: str = "1g"
    cpus: float = 2.0
    pids: int = 512
    replicas: int = 1


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    platform: str  # the primary platform: what the canary runs, the scan reads and the size is of
    python_version: str
    bases: Mapping[str, BaseImage]
    hardware: Mapping[str, str] = field(default_factory=dict)
    build_args: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    canary: CanarySettings = CanarySettings()
    platforms: tuple[str, ...] = ()  # every platform of the image index; () means just ``platform``
    runtime: RuntimeSettings = RuntimeSettings()

    def __post_init__(self) -> None:
        if not self.platforms:
            object.__setattr__(self, "platforms", (self.platform,))

    @property
    def multi_platform(self) -> bool:
        return len(self.platforms) > 1

    def base(self, role: str) -> BaseImage:
        return self.bases[role]


PROFILE_KEYS = (
    "name",
    "description",
    "platform",
    "platforms",
    "python_version",
    "bases",
    "hardware",
    "build_args",
    "env",
    "canary",
    "runtime",
)


L = TypeVar("L", CanarySettings, RuntimeSettings)


def _limits(table: Table, key: str, kind: type[L]) -> L:
    """A limits table (``canary``, ``runtime``): its keys are the dataclass's fields, typed by their defaults."""
    sub = table.table(key)
    defaults = kind()
    sub.only(f.name for f in fields(kind))
    values = {f.name: sub.opt(f.name, type(getattr(defaults, f.name)), getattr(defaults, f.name)) for f in fields(kind)}
    return kind(**values)


def _platforms(table: Table) -> tuple[str, ...]:
    """``platform`` (one) or ``platforms`` (one image index for all; the first is the primary)."""
    if "platform" in table.data and "platforms" in table.data:
        raise table.error("platforms", "give platform (one) or platforms (several), not both")
    if "platforms" in table.data:
        platforms = table.str_list("platforms")
        if not platforms:
            raise table.error("platforms", 'expected at least one, e.g. ["linux/amd64", "linux/arm64"]')
        for i, platform in enumerate(platforms):
            if not PLATFORM_RE.match(platform):
                raise table.error(f"platforms[{i}]", f"expected linux/amd64 or linux/arm64, got {platform!r}")
        if len(set(platforms)) != len(platforms):
            raise table.error("platforms", f"each platform once, got {platforms}")
        return tuple(platforms)
    platform = table.req("platform", str, expected="linux/amd64 or linux/arm64 (or platforms, a list of them)")
    if not PLATFORM_RE.match(platform):
        raise table.error("platform", f"expected linux/amd64 or linux/arm64, got {platform!r}")
    return (platform,)


def check_build_args(table: Table, build_args: Mapping[str, str]) -> None:
    """Build args become ``--build-arg`` and ``ENV``: variable names, and nothing that looks like a secret."""
    for key in build_args:
        if not ENV_NAME_RE.match(key):
            raise table.error(f"build_args.{key}", "not a valid variable name")
        if any(word in key.upper() for word in SECRET_WORDS):
            raise table.error(
                f"build_args.{key}",
                "looks like a secret; build args end up in the image history. Pass secrets as BuildKit secrets instead",
            )


def parse_profile(table: Table, name: str) -> Profile:
    table.only(PROFILE_KEYS)
    declared = table.opt("name", str, name)
    if declared != name:
        raise table.error("name", f"{declared!r} does not match the file name {name!r}")
    if not NAME_RE.match(name):
        raise table.error(None, f"profile name {name!r}: use lowercase letters, digits and '-'")
    platforms = _platforms(table)
    python_version = table.req("python_version", str, expected='the Python version of the bases, like "3.11"')
    if not PYTHON_RE.match(python_version):
        raise table.error("python_version", f'expected a version like "3.11", got {python_version!r}')
    bases = {}
    for role, ref in table.str_map("bases").items():
        if not ref.startswith(LOCAL_PREFIX) and not PINNED_RE.match(ref):
            raise table.error(
                f"bases.{role}",
                f"{ref!r} is not pinned: write it as name:tag@sha256:<64 hex>, "
                f"or local:<name> for a base built by `shipyard base`",
            )
        bases[role] = BaseImage(ref)
    if not bases:
        raise table.error(
            "bases", 'missing (required): at least one role, e.g. {"python": "local:debian-bookworm-python"}'
        )
    build_args = table.str_map("build_args")
    env = table.str_map("env")
    for section, values in (("build_args", build_args), ("env", env)):
        for key in values:
            if not ENV_NAME_RE.match(key):
                raise table.error(f"{section}.{key}", "not a valid variable name")
    check_build_args(table, build_args)
    hardware = table.str_map("hardware")
    for key in hardware:
        if not ENV_NAME_RE.match(key):
            raise table.error(f"hardware.{key}", "use letters, digits and '_' (it becomes SHIPYARD_HARDWARE_<KEY>)")
    canary = _limits(table, "canary", CanarySettings)
    runtime = _limits(table, "runtime", RuntimeSettings)
    if runtime.replicas < 1:
        raise table.table("runtime").error("replicas", f"expected at least 1, got {runtime.replicas}")
    return Profile(
        name=name,
        description=table.opt("description", str, ""),
        platform=platforms[0],
        platforms=platforms,
        python_version=python_version,
        bases=bases,
        hardware=hardware,
        build_args=build_args,
        env=env,
        canary=canary,
        runtime=runtime,
    )


def load_profiles(directory: Path, *, root: Path | None = None) -> dict[str, Profile]:
    """Every ``*.json`` in ``directory``, by name, in name order."""
    if not directory.is_dir():
        raise ConfigError(f"{directory}: profiles directory not found")
    profiles = {}
    for path in sorted(directory.glob("*.json")):
        shown = str(path.relative_to(root)) if root and path.is_relative_to(root) else str(path)
        profiles[path.stem] = parse_profile(load_document(path, display=shown), path.stem)
    if not profiles:
        raise ConfigError(f"{directory}: no profiles (*.json) found")
    return profiles


def apply_base_override(profiles: Mapping[str, Profile], override: str | None) -> dict[str, Profile]:
    """``local`` points every role of every profile at the local base; ``ROLE=REF,…`` sets roles.

    This is how the GPU profiles build on a machine that cannot pull their upstream bases.
    """
    if not override:
        return dict(profiles)
    if override == "local":

        def new_bases(p: Profile) -> dict[str, BaseImage]:
            return {role: BaseImage(LOCAL_PREFIX + DEFAULT_LOCAL_BASE) for role in p.bases}
    else:
        pairs = {}
        for item in override.split(","):
            role, sep, ref = item.partition("=")
            if not sep or not role or not ref:
                raise ConfigError(f"--base-override: expected 'local' or ROLE=REF[,ROLE=REF], got {item!r}")
            pairs[role.strip()] = BaseImage(ref.strip())

        def new_bases(p: Profile) -> dict[str, BaseImage]:
            return {role: pairs.get(role, base) for role, base in p.bases.items()}

    return {name: replace(p, bases=new_bases(p)) for name, p in profiles.items()}


DEFAULT_LOCAL_BASE = "debian-bookworm-python"
