"""Rendering of the Jinja Dockerfile templates for one build unit."""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ..config.catalog import ImageSpec
from ..config.profiles import Profile
from ..errors import ConfigError

APP_UID = 10001
MODEL_CACHE_DIR = "/models"


@dataclass(frozen=True)
class RenderInputs:
    profile: Profile
    image: ImageSpec
    parent: str  # reference of the parent, by digest when known
    labels: Mapping[str, str]


def oci_labels(
    *, profile: str, image: str, revision: str, created: str, source: str, version: str, title: str
) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.source": source,
        "io.shipyard.profile": profile,
        "io.shipyard.image": image,
    }


class TemplateRenderer:
    def __init__(self, templates: Path) -> None:
        self.templates = templates
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates)),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )

    def render(self, inputs: RenderInputs) -> str:
        image = inputs.image
        context = {
            "profile": inputs.profile,
            "image": image,
            "parent": inputs.parent,
            "labels": dict(inputs.labels),
            "uid": APP_UID,
            "model_cache_dir": MODEL_CACHE_DIR,
            "lock": image.lock.relative_to(image.context).as_posix() if image.lock else "",
            "package_dir": image.service.module.split(".")[0] if image.service else "",
        }
        try:
            return self.env.get_template(image.template).render(context)
        except jinja2.TemplateSyntaxError as exc:
            where = self._display(exc.filename or image.template)
            raise ConfigError(
                f"{where}:{exc.lineno}: template syntax error: {exc.message}", file=where, line=exc.lineno
            ) from None
        except jinja2.TemplateNotFound as exc:
            raise ConfigError(f"dockerfiles/{exc.name}: template not found (used by image {image.name!r})") from None
        except jinja2.UndefinedError as exc:
            file, line = self._template_line(exc, image.template)
            raise ConfigError(
                f"{file}{f':{line}' if line else ''}: undefined variable: {exc.message}", file=file, line=line
            ) from None

    def _display(self, filename: str) -> str:
        path = Path(filename)
        if path.is_absolute() and path.is_relative_to(self.templates.parent):
            return path.relative_to(self.templates.parent).as_posix()
        return f"{self.templates.name}/{filename}"

    def _template_line(self, exc: BaseException, fallback: str) -> tuple[str, int | None]:
        """File and line of the innermost template frame (jinja rewrites tracebacks to point there)."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        if frames:
            return self._display(frames[-1].filename), frames[-1].lineno
        return self._display(fallback), None


def check_templates(renderer: TemplateRenderer, units: Iterable[tuple[Profile, ImageSpec]]) -> None:
    """Render every unit once with placeholder parent and labels, so that a template error stops a build
    with its file:line before any base, wheel or image is built (rendering costs milliseconds)."""
    seen: set[tuple[str, str]] = set()
    for profile, image in units:
        if (profile.name, image.name) in seen:
            continue
        seen.add((profile.name, image.name))
        labels = oci_labels(
            profile=profile.name,
            image=image.name,
            revision="<revision>",
            created="<created>",
            source="<source>",
            version="<release>",
            title=image.name,
        )
        renderer.render(RenderInputs(profile=profile, image=image, parent="<parent>", labels=labels))
