"""Local base images: a Debian rootfs with Python made by mmdebstrap, pushed to the registry.

No public registry can be pulled from on an air-gapped site (or this machine), so the
``cpu`` profile, and any profile with ``--base-override local``, starts from a base built
here. Its tag is a hash of the recipe, so it is built once per registry and reused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, EngineError, RegistryError
from ..events import Emit, Event
from ..oci.client import RegistryClient
from ..oci.reference import RegistryTarget
from ..runner import Runner


@dataclass(frozen=True)
class LocalBaseRecipe:
    suite: str
    packages: tuple[str, ...]
    python_version: str

    @property
    def tag(self) -> str:
        text = f"{self.suite}\0{','.join(self.packages)}"
        return f"{self.suite}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


LOCAL_BASES = {
    "debian-bookworm-python": LocalBaseRecipe(
        suite="bookworm",
        packages=("python3", "python3-venv", "python3-pip", "tini", "ca-certificates", "passwd"),
        python_version="3.11",
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
    target: RegistryTarget
    registry: RegistryClient
    runner: Runner
    cache_dir: Path
    emit: Emit
    before_build: Callable[[], None] | None = None  # engine preflight, only when a base must be built

    def repository(self, name: str) -> str:
        return self.target.repository("bases", name)

    def ensure(self, name: str, *, rebuild: bool = False) -> str:
        """The base's reference by digest, building and pushing it when the registry lacks it."""
        recipe = LOCAL_BASES.get(name)
        if recipe is None:
            raise ConfigError(f"local:{name}: unknown local base; known: {', '.join(LOCAL_BASES)}")
        repo = self.repository(name)
        if not rebuild:
            digest = self._present(repo, recipe.tag)
            if digest:
                self.emit(Event("base.ready", f"local base {name} present ({digest[:19]})", data={"digest": digest}))
                return f"{self.target.host}/{repo}@{digest}"
        self.emit(Event("base.building", f"building local base {name} with mmdebstrap ({recipe.suite})"))
        self._build(name, recipe)
        if self.runner.dry_run:
            return f"{self.target.host}/{repo}:{recipe.tag}"
        digest = self.registry.resolve(repo, recipe.tag)
        if not digest:
            raise EngineError(
                f"local base {name}: pushed, but {self.target.host}/{repo}:{recipe.tag} is not in the registry"
            )
        self.emit(Event("base.ready", f"local base {name} pushed ({digest[:19]})", data={"digest": digest}))
        return f"{self.target.host}/{repo}@{digest}"

    def _present(self, repo: str, tag: str) -> str | None:
        try:
            return self.registry.resolve(repo, tag)
        except RegistryError:
            if self.runner.dry_run:  # a dry run may be planned without a registry
                return None
            raise

    def _build(self, name: str, recipe: LocalBaseRecipe) -> None:
        if self.before_build is not None:
            self.before_build()
        sources = host_debian_sources(recipe.suite)
        if not sources:
            raise EngineError(
                f"no apt source for Debian {recipe.suite} on this host (/etc/apt/sources.list.d/"
                f"debian.sources or /etc/apt/sources.list); mmdebstrap needs a mirror"
            )
        work = self.cache_dir / "bases"
        work.mkdir(parents=True, exist_ok=True)
        rootfs = work / f"{name}-{recipe.tag}.tar"
        ref = f"{self.target.ref('bases', name)}:{recipe.tag}"
        self.runner.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--include=" + ",".join(recipe.packages),
                "--format=tar",
                recipe.suite,
                str(rootfs),
                *sources,
            ]
        )
        self.runner.run(["docker", "import", "--change", 'CMD ["python3"]', str(rootfs), ref])
        self.runner.run(["docker", "push", "--quiet", ref])
        if not self.runner.dry_run:
            rootfs.unlink(missing_ok=True)
