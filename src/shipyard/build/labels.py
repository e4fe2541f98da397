"""The labels shipyard puts on a unit's image, and those that name the release rather than its content."""

from __future__ import annotations

from .options import BuildContext
from .plan import BuildUnit
from .render import oci_labels

INPUTS_LABEL = "io.shipyard.inputs"
# Labels that name the release rather than the image's content; the input digest ignores them.
RELEASE_LABELS = (
    "org.opencontainers.image.revision",
    "org.opencontainers.image.created",
    "org.opencontainers.image.version",
    INPUTS_LABEL,
)


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
