"""The plan: profiles × catalog → build units in dependency order, with refs and tags.

Pure: no engine, no registry, no clock. Everything after it reads the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..config.catalog import Catalog, ImageSpec
from ..config.profiles import BaseImage, Profile
from ..config.reader import did_you_mean
from ..dag import ancestors, toposort
from ..errors import ConfigError
from ..oci.reference import OCI_TAG_RE, RegistryNamespace


@dataclass(frozen=True)
class BuildUnit:
    profile: Profile
    image: ImageSpec
    parent_unit: str | None  # key of the parent unit, or None when the parent is a profile base
    base: BaseImage | None  # the profile base when parent_unit is None
    repository: str  # full reference without tag: host/namespace/profile/image
    repository_path: str  # the same inside the registry: namespace/profile/image
    tag: str
    cache_ref: str

    @property
    def key(self) -> str:
        return unit_key(self.profile.name, self.image.name)

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def build_args(self) -> dict[str, str]:
        return build_args_of(self.profile, self.image)

    @property
    def platform(self) -> str:
        """What buildx builds: one platform, or several as one image index (``linux/amd64,linux/arm64``)."""
        return ",".join(self.profile.platforms)

    @property
    def base_key(self) -> str:
        """The profile base this unit starts from, for the platforms it needs (a multi-platform base is
        another image than the single-platform one of the same name)."""
        assert self.base is not None
        return f"{self.base.ref}|{self.platform}"


@dataclass(frozen=True)
class Plan:
    release_tag: str
    target: RegistryNamespace
    units: Sequence[BuildUnit]  # parents before children

    def unit(self, key: str) -> BuildUnit:
        return next(u for u in self.units if u.key == key)

    @property
    def profiles(self) -> list[str]:
        return list(dict.fromkeys(u.profile.name for u in self.units))


def build_args_of(profile: Profile, image: ImageSpec) -> dict[str, str]:
    """The profile's build args with the image's own merged over them (the image's win)."""
    return {**profile.build_args, **image.build_args}


def unit_key(profile: str, image: str) -> str:
    return f"{profile}/{image}"


def make_plan(
    profiles: Mapping[str, Profile],
    catalog: Catalog,
    *,
    release_tag: str,
    target: RegistryNamespace,
    only_profiles: Iterable[str] = (),
    only_images: Iterable[str] = (),
) -> Plan:
    if not OCI_TAG_RE.match(release_tag):
        raise ConfigError(f"release tag {release_tag!r} is not a valid OCI tag ([A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")
    chosen_profiles = list(only_profiles) or list(profiles)
    for name in chosen_profiles:
        if name not in profiles:
            raise ConfigError(
                f"--profile: unknown profile {name!r}{did_you_mean(name, profiles)}; "
                f"profiles/ has: {', '.join(profiles)}"
            )
    for name in only_images:
        spec = catalog.image(name)  # raises with a hint
        if not any(spec.on(profile) for profile in chosen_profiles):
            raise ConfigError(
                f"--image {name}: not built for {', '.join(chosen_profiles)} "
                f"(images.{name}.profiles = {list(spec.profiles)}); choose one of those profiles"
            )

    image_parents = {name: ([] if spec.parent_is_base else [spec.parent]) for name, spec in catalog.images.items()}
    image_order = toposort(image_parents)
    wanted = ancestors(image_parents, only_images) if only_images else set(image_order)

    units: list[BuildUnit] = []
    for profile_name in chosen_profiles:
        profile = profiles[profile_name]
        for image_name in image_order:
            if image_name not in wanted:
                continue
            spec = catalog.images[image_name]
            if not spec.on(profile_name):
                continue
            base = None
            if spec.parent_is_base:
                if spec.base_role not in profile.bases:
                    raise ConfigError(
                        f"profiles/{profile.name}.json: bases.{spec.base_role}: missing, but image "
                        f"{spec.name!r} starts from base:{spec.base_role}"
                        f"{did_you_mean(spec.base_role, profile.bases)}"
                    )
                base = profile.base(spec.base_role)
            units.append(
                BuildUnit(
                    profile=profile,
                    image=spec,
                    parent_unit=None if spec.parent_is_base else unit_key(profile.name, spec.parent),
                    base=base,
                    repository=target.ref(profile.name, spec.name),
                    repository_path=target.repository(profile.name, spec.name),
                    tag=release_tag,
                    cache_ref=target.ref("cache", profile.name, spec.name),
                )
            )
    return Plan(release_tag=release_tag, target=target, units=units)
