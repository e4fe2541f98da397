"""Local base images: a Debian rootfs with Python made by mmdebstrap (one per platform, tied by an index
for a multi-platform profile), pushed under a tag that hashes the recipe, so it is built once per registry."""

from __future__ import annotations

import hashlib
import platform as host_machine
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, EngineError, RegistryError
from ..events import Emit, Event
from ..oci.client import Manifest, RegistryClient
from ..oci.reference import RegistryNamespace
from ..runner import Runner

# Debian's name for a platform's architecture (mmdebstrap --arch, the archive's binary-<arch>).
DEBIAN_ARCH_BY_PLATFORM = {"linux/amd64": "amd64", "linux/arm64": "arm64"}
DEFAULT_PLATFORMS = ("linux/amd64",)
_PLATFORM_BY_MACHINE = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}


def native_platform() -> str:
    """This host's own platform, as a profile spells it: its programs run without qemu."""
    machine = host_machine.machine()
    return _PLATFORM_BY_MACHINE.get(machine, f"linux/{machine}")


@dataclass(frozen=True)
class LocalBaseRecipe:
    suite: str
    packages: tuple[str, ...]
    python_version: str
    command: str = '["python3"]'  # the image's CMD (JSON)

    @property
    def tag(self) -> str:
        text = f"{self.suite}\0{','.join(self.packages)}"
        return f"{self.suite}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"

    def platform_tag(self, platform: str) -> str:
        """The tag of the recipe's image for one platform; amd64 keeps the tag it has always had."""
        arch = DEBIAN_ARCH_BY_PLATFORM[platform]
        return self.tag if arch == "amd64" else f"{self.tag}-{arch}"

    def index_tag(self, platforms: Sequence[str]) -> str:
        """The tag of the index over ``platforms`` (sorted): one per set, so sets never move each other."""
        return "-".join([self.tag, *(DEBIAN_ARCH_BY_PLATFORM[p] for p in platforms)])


LOCAL_BASES = {
    "debian-bookworm-python": LocalBaseRecipe(
        suite="bookworm",
        packages=("python3", "python3-venv", "python3-pip", "tini", "ca-certificates", "passwd"),
        python_version="3.11",
    ),
    # the edge proxy of deploy targets: Debian's HAProxy 2.6 (socat talks to its runtime API)
    "debian-bookworm-haproxy": LocalBaseRecipe(
        suite="bookworm",
        packages=("haproxy", "socat"),
        python_version="",
        command='["haproxy", "-W", "-db", "-f", "/etc/shipyard-edge/haproxy.cfg"]',
    ),
}


def host_debian_sources(
    suite: str,
    files: tuple[Path, ...] = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")),
) -> list[str]:
    """The host's apt entries for ``suite`` (and its -updates/-security), as one-line sources."""
    lines: list[str] = []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in text.split("\n\n"):
                fields = {}
                for line in stanza.splitlines():
                    key, sep, value = line.partition(":")
                    if sep and not line.startswith(("#", " ")):
                        fields[key.strip()] = value.strip()
                if "deb" not in fields.get("Types", "").split():
                    continue
                for uri in fields.get("URIs", "").split():
                    for s in fields.get("Suites", "").split():
                        if s == suite or s.startswith(suite + "-"):
                            lines.append(f"deb {uri} {s} {fields.get('Components', 'main')}")
        else:
            for line in text.splitlines():
                parts = line.split()
                if len(parts) >= 4 and parts[0] == "deb" and parts[2].split("-")[0] == suite:
                    lines.append(" ".join(parts))
    return lines


@dataclass
class LocalBases:
    target: RegistryNamespace
    registry: RegistryClient
    runner: Runner
    cache_dir: Path
    emit: Emit
    before_build: Callable[[], None] | None = None  # engine preflight, only when a base must be built

    def repository(self, name: str) -> str:
        return self.target.repository("bases", name)

    def ensure(self, name: str, *, platforms: Sequence[str] = DEFAULT_PLATFORMS, rebuild: bool = False) -> str:
        """The base's reference by digest, building and pushing what the registry lacks.

        One platform: that platform's image. Several: an index over one image per platform, which
        a multi-platform build's ``FROM`` resolves per platform. The index is looked up first, so a
        present index is returned without touching its members.
        """
        recipe = LOCAL_BASES.get(name)
        if recipe is None:
            raise ConfigError(f"local:{name}: unknown local base; known: {', '.join(LOCAL_BASES)}")
        wanted = _base_platforms(name, platforms)
        if len(wanted) == 1:
            return self._images(name, recipe, wanted, rebuild=rebuild)[0]
        repo = self.repository(name)
        tag = recipe.index_tag(wanted)
        if not rebuild:
            found = self._present_manifest(repo, tag)
            if found is not None:
                self._check_index(name, found, wanted)
                self._ready(f"local base {name} ({', '.join(wanted)}) present", found.digest, wanted)
                return f"{self.target.host}/{repo}@{found.digest}"
        return self._create_index(name, tag, self._images(name, recipe, wanted, rebuild=rebuild), wanted)

    def _images(self, name: str, recipe: LocalBaseRecipe, platforms: list[str], *, rebuild: bool) -> list[str]:
        """Each platform's image by digest (a dry run that must build: by tag), present ones as they are.

        Emulation is checked before anything is built: a host without qemu fails at once, not after
        building its own arch's rootfs.
        """
        found = {p: None if rebuild else self._present_image(name, recipe, p) for p in platforms}
        for platform in platforms:
            if found[platform] is None and platform != native_platform():
                self._check_emulation(platform)
        return [found[p] or self._build_image(name, recipe, p) for p in platforms]

    def _present_image(self, name: str, recipe: LocalBaseRecipe, platform: str) -> str | None:
        repo = self.repository(name)
        tag = recipe.platform_tag(platform)
        digest = self._present(repo, tag)
        if digest:
            self._ready(f"local base {_what(name, recipe, platform)} present", digest, [platform], tag == recipe.tag)
            return f"{self.target.host}/{repo}@{digest}"
        return None

    def _build_image(self, name: str, recipe: LocalBaseRecipe, platform: str) -> str:
        repo = self.repository(name)
        tag = recipe.platform_tag(platform)
        what = _what(name, recipe, platform)
        native = platform == native_platform()
        how = recipe.suite if native else f"{recipe.suite}, {DEBIAN_ARCH_BY_PLATFORM[platform]} under qemu"
        self.emit(Event("base.building", f"building local base {what} with mmdebstrap ({how})"))
        self._build(name, recipe, platform)
        if self.runner.dry_run:
            return f"{self.target.host}/{repo}:{tag}"
        digest = self.registry.resolve(repo, tag)
        if not digest:
            raise EngineError(f"local base {name}: pushed, but {self.target.host}/{repo}:{tag} is not in the registry")
        self._ready(f"local base {what} pushed", digest, [platform], tag == recipe.tag)
        return f"{self.target.host}/{repo}@{digest}"

    def _create_index(self, name: str, tag: str, members: list[str], platforms: list[str]) -> str:
        repo = self.repository(name)
        ref = f"{self.target.ref('bases', name)}:{tag}"
        self.emit(Event("base.building", f"creating the index of local base {name} ({', '.join(platforms)})"))
        self.runner.run(["docker", "buildx", "imagetools", "create", "--tag", ref, *members])
        if self.runner.dry_run:
            return ref
        found = self.registry.manifest(repo, tag)
        if found is None:
            raise EngineError(f"local base {name}: imagetools created {ref}, but the registry does not have it")
        self._check_index(name, found, platforms)
        self._ready(f"local base {name} ({', '.join(platforms)}) pushed", found.digest, platforms)
        return f"{self.target.host}/{repo}@{found.digest}"

    def _check_index(self, name: str, found: Manifest, platforms: list[str]) -> None:
        """An index tag must name exactly the set it was made for (imagetools flattens indexes it is given)."""
        listed = sorted(index_platforms(found))
        if listed != platforms:
            raise EngineError(
                f"local base {name}: {self.repository(name)}@{found.digest} lists "
                f"{', '.join(listed) or 'no platform'}, not {', '.join(platforms)}: delete that tag from the registry"
            )

    def _ready(self, message: str, digest: str, platforms: list[str], default_tag: bool = False) -> None:
        """``base.ready``; the single-platform amd64 image's event stays as it always was (no platforms)."""
        data: dict[str, object] = {"digest": digest}
        if not default_tag:
            data["platforms"] = platforms
        self.emit(Event("base.ready", f"{message} ({digest[:19]})", data=data))

    def _present(self, repo: str, tag: str) -> str | None:
        found = self._present_manifest(repo, tag)
        return found.digest if found else None

    def _present_manifest(self, repo: str, tag: str) -> Manifest | None:
        try:
            return self.registry.manifest(repo, tag)
        except RegistryError:
            if self.runner.dry_run:  # a dry run may be planned without a registry
                return None
            raise

    def _build(self, name: str, recipe: LocalBaseRecipe, platform: str) -> None:
        """mmdebstrap, docker import, docker push of one platform's image; the host's own platform with
        exactly the commands a single-platform base has always been built with."""
        if self.before_build is not None:
            self.before_build()
        sources = host_debian_sources(recipe.suite)
        if not sources:
            raise EngineError(
                f"no apt source for Debian {recipe.suite} on this host (/etc/apt/sources.list.d/"
                f"debian.sources or /etc/apt/sources.list); mmdebstrap needs a mirror"
            )
        native = platform == native_platform()
        work = self.cache_dir / "bases"
        work.mkdir(parents=True, exist_ok=True)
        tag = recipe.platform_tag(platform)
        rootfs = work / f"{name}-{tag}.tar"
        ref = f"{self.target.ref('bases', name)}:{tag}"
        arch = [] if native else [f"--arch={DEBIAN_ARCH_BY_PLATFORM[platform]}"]
        self.runner.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                *arch,
                "--include=" + ",".join(recipe.packages),
                "--format=tar",
                recipe.suite,
                str(rootfs),
                *sources,
            ]
        )
        on = [] if native else ["--platform", platform]
        self.runner.run(["docker", "import", *on, "--change", f"CMD {recipe.command}", str(rootfs), ref])
        self.runner.run(["docker", "push", "--quiet", ref])
        if not self.runner.dry_run:
            rootfs.unlink(missing_ok=True)

    def _check_emulation(self, platform: str) -> None:
        """mmdebstrap runs a foreign arch's maintainer scripts: say so in one line when it cannot."""
        arch = DEBIAN_ARCH_BY_PLATFORM[platform]
        if self.runner.run(["arch-test", arch], check=False).returncode != 0:
            raise EngineError(
                f"{platform}: this {host_machine.machine()} host cannot run {arch} programs, which a {arch} "
                f"local base needs: install qemu-user-static and register it in binfmt_misc (scripts/up.sh does)"
            )


def _what(name: str, recipe: LocalBaseRecipe, platform: str) -> str:
    """How events name one platform's image: the amd64 one by the base's name alone, as always."""
    return name if recipe.platform_tag(platform) == recipe.tag else f"{name} ({platform})"


def index_platforms(found: Manifest) -> list[str]:
    """The os/arch of each image an index lists (attestation entries, unknown/unknown, left out)."""
    if not found.is_index:
        return []
    listed = []
    for entry in found.json.get("manifests", []):
        plat = entry.get("platform") or {}
        if plat.get("os", "unknown") != "unknown":
            listed.append(f"{plat['os']}/{plat.get('architecture', '')}")
    return listed


def _base_platforms(name: str, platforms: Sequence[str]) -> list[str]:
    """The platforms as one sorted list without repeats: the index depends on the set, not its order."""
    wanted = sorted({platforms} if isinstance(platforms, str) else set(platforms))
    if not wanted:
        raise ConfigError(f"local:{name}: no platform to build the base for; give the profile a platform")
    for platform in wanted:
        if platform not in DEBIAN_ARCH_BY_PLATFORM:
            raise ConfigError(
                f"local:{name}: no local base for platform {platform}; use {', '.join(DEBIAN_ARCH_BY_PLATFORM)}"
            )
    return wanted
