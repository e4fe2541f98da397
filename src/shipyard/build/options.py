"""What a build is given: options, the injected outside world, and per-unit facts derived from them
(plan, labels, what verify and canary will expect, the rendered Dockerfile)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config.project import Project
from ..events import Emit
from ..oci.client import RegistryClient
from ..oci.credentials import Credentials
from ..oci.reference import RegistryTarget
from ..oci.signing import SigningKey
from ..runner import Runner
from ..state import make_dirs
from . import default_jobs
from .plan import BuildUnit, Plan, make_plan
from .render import BASE_IMAGE_ARG, RenderInputs, TemplateRenderer, oci_labels
from .revision import Revision

INPUTS_LABEL = "io.shipyard.inputs"
REUSE_LOOKUPS = 8  # units looked up in the registry at once; builds stay at --jobs
# Labels that name the release rather than the image's content; the input digest ignores them.
RELEASE_LABELS = (
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
    "org.opencontainers.image.version",
    INPUTS_LABEL,
)


@dataclass(frozen=True)
class BuildOptions:
    target: RegistryTarget
    profiles: Sequence[str] = ()
    images: Sequence[str] = ()
    builder: str | None = None
    jobs: int = field(default_factory=default_jobs)
    reuse: bool = True
    attest: bool = True  # provenance from buildx and our own SBOM referrer (build/attest.py)


@dataclass
class BuildContext:
    """Everything a build needs from outside: injected so tests can replace any part."""

    project: Project
    revision: Revision
    runner: Runner
    registry: RegistryClient
    cache_dir: Path
    emit: Emit
    # Run once, before the first unit that really builds (engine preflight, docker login): a release
    # whose units are all reused needs no engine at all.
    before_first_build: Callable[[], None] | None = None
    credentials: Credentials | None = None  # for Trivy reading the pushed image (SBOM); never in argv
    signer: SigningKey | None = None  # signs every pushed digest (cosign's layout); None: left unsigned
    # a client for another registry a model's ``from`` names (read only); None: its docker login, if any
    registry_for: Callable[[str], RegistryClient] | None = None


def plan_for(project: Project, revision: Revision, options: BuildOptions) -> Plan:
    return make_plan(
        project.profiles,
        project.catalog,
        release_tag=revision.release_tag,
        target=options.target,
        only_profiles=options.profiles,
        only_images=options.images,
    )


def request_build_args(unit: BuildUnit, parent: str, revision: Revision) -> dict[str, str]:
    """What a build of ``unit`` passes to buildx (and the bake file): the unit's build args; for a plain
    Dockerfile its parent as BASE_IMAGE (``FROM ${BASE_IMAGE}``); and SOURCE_DATE_EPOCH, the commit's
    time, by which BuildKit dates the image config and its history, so a rebuild from cache of the same
    commit gives the same platform manifest (the index still differs: its provenance records the build).
    Not an input: a new commit with the same inputs reuses."""
    args = unit.build_args if unit.image.dockerfile is None else {**unit.build_args, BASE_IMAGE_ARG: parent}
    return {**args, "SOURCE_DATE_EPOCH": str(int(revision.committed.timestamp()))}


def unit_labels(ctx: BuildContext, unit: BuildUnit) -> dict[str, str]:
    return oci_labels(
        profile=unit.profile.name,
        image=unit.image.name,
        revision=ctx.revision.sha,
        created=ctx.revision.created,
        source=ctx.project.catalog.source or ctx.project.catalog.project_name,
        version=unit.tag,
        title=unit.image.name,
    )


def expectations(ctx: BuildContext, unit: BuildUnit, labels: Mapping[str, str]) -> dict[str, Any]:
    """What verify and canary will hold the pushed image to (see UnitRecord.expect): the policy the image
    is built with, so a later change to ``[policy]`` does not change the verdict on this release."""
    policy = ctx.project.catalog.policy
    expect: dict[str, Any] = {
        "user": policy.user,
        # a plain Dockerfile sets its own ENV: shipyard only holds it to what its templates write
        "env": {} if unit.image.dockerfile else {**unit.build_args, **unit.profile.env, "PYTHONUNBUFFERED": "1"},
        "labels": dict(labels),
        "required_labels": list(policy.required_labels),
        "port": unit.image.service.port if unit.image.service else None,
        "size_budget_mb": unit.image.size_budget_mb or policy.size_budget_mb,
    }
    if unit.image.skip_checks:
        expect["skip_checks"] = dict(unit.image.skip_checks)
    if unit.image.service is not None:
        expect["service"] = asdict(unit.image.service)
        expect["canary"] = asdict(unit.profile.canary)
    return expect


def render_unit(
    ctx: BuildContext, renderer: TemplateRenderer, unit: BuildUnit, parent: str, labels: Mapping[str, str] | None = None
) -> Path:
    labels = dict(labels or unit_labels(ctx, unit))
    text = renderer.render(RenderInputs(profile=unit.profile, image=unit.image, parent=parent, labels=labels))
    path = ctx.project.work_dir / "rendered" / unit.profile.name / unit.image.name / "Dockerfile"
    make_dirs(path.parent)
    path.write_text(text)
    return path


class Once:
    """Calls ``fn`` the first time it is called, from whichever thread; later calls wait for it and return."""

    def __init__(self, fn: Callable[[], None] | None) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if not self._done and self._fn is not None:
                self._fn()
            self._done = True
