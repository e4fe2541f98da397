"""A project: the repository shipyard is pointed at (``--project DIR``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..state import project_state_dir
from .catalog import CATALOG_FILE, Catalog, check_image_profiles, load_catalog
from .profiles import Profile, apply_base_override, load_profiles
from .targets import check_targets


@dataclass(frozen=True)
class Project:
    root: Path
    profiles: dict[str, Profile]
    catalog: Catalog

    @property
    def templates(self) -> Path:
        return self.root / "dockerfiles"

    @property
    def work_dir(self) -> Path:
        """Rendered Dockerfiles, release records, reports (git-ignored)."""
        return project_state_dir(self.root)


def load_project(root: Path, *, base_override: str | None = None) -> Project:
    root = root.resolve()
    if not (root / CATALOG_FILE).is_file():
        raise ConfigError(f"--project {root}: no {CATALOG_FILE} there; point --project at a repository with a catalog")
    profiles = load_profiles(root / "profiles", root=root)
    override = base_override if base_override is not None else os.environ.get("SHIPYARD_BASE_OVERRIDE")
    catalog = load_catalog(root)
    check_image_profiles(catalog, profiles)
    check_targets(catalog.targets, profiles, {name: catalog.services_of(name) for name in profiles})
    return Project(root=root, profiles=apply_base_override(profiles, override), catalog=catalog)


def cache_dir() -> Path:
    """Host-side downloads and tools shared by every project (wheels, tini, base rootfs)."""
    return Path(os.environ.get("SHIPYARD_CACHE_DIR") or Path.home() / ".cache" / "shipyard")
