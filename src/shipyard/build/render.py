"""Rendering of the Dockerfile templates for one build unit: Jinja, or a plain Dockerfile as it is.

Templates are looked up in the project's ``dockerfiles/`` first, then in the package, so a team
imports shipyard's building blocks (``{% import "shipyard/macros.j2" as m with context %}``)
instead of copying them, and can still override them with a ``dockerfiles/shipyard/macros.j2``.
"""

from __future__ import annotations

import json
import threading
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from ..config.catalog import ImageSpec
from ..config.policy import Policy
from ..config.profiles import Profile
from ..errors import ConfigError
from .plan import build_args_of

MODEL_CACHE_DIR = "/models"
BASE_IMAGE_ARG = "BASE_IMAGE"  # a plain Dockerfile's parent: ``ARG BASE_IMAGE`` / ``FROM ${BASE_IMAGE}``
PACKAGED = Path(str(resources.files("shipyard") / "resources" / "templates"))


_SHARED: dict[tuple[Path, Policy], TemplateRenderer] = {}
_SHARED_LOCK = threading.Lock()


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
    """One Jinja environment per project in a process (``for_project``): every unit of every profile
    renders from templates compiled once, whichever thread asks first."""

    def __init__(self, templates: Path, policy: Policy | None = None) -> None:
        self.templates, self.policy = templates, policy or Policy()
        self._compiling = threading.Lock()
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(
                [jinja2.FileSystemLoader(str(templates)), jinja2.FileSystemLoader(str(PACKAGED))]
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            autoescape=False,
        )

    def render(self, inputs: RenderInputs) -> str:
        image = inputs.image
        if image.dockerfile is not None:  # a plain Dockerfile: no Jinja; its parent comes as BASE_IMAGE
            return plain_dockerfile(image.dockerfile, inputs.labels)
        context = {
            "profile": inputs.profile,
            "image": image,
            "parent": inputs.parent,
            "labels": dict(inputs.labels),
            "uid": self.policy.uid,
            "gid": self.policy.gid,
            "build_args": build_args_of(inputs.profile, image),
            "model_cache_dir": MODEL_CACHE_DIR,
            "lock": image.lock.relative_to(image.context).as_posix() if image.lock else "",
            "package_dir": image.service.module.split(".")[0] if image.service and image.service.module else "",
        }
        try:
            with self._compiling:  # two threads would each compile a template not yet in the cache
                template = self.env.get_template(image.template)
            return template.render(context)
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

    @classmethod
    def for_project(cls, templates: Path, policy: Policy) -> TemplateRenderer:
        with _SHARED_LOCK:
            key = (templates, policy)
            if key not in _SHARED:
                _SHARED[key] = cls(templates, policy)
            return _SHARED[key]

    def _display(self, filename: str) -> str:
        path = Path(filename)
        if path.is_absolute() and path.is_relative_to(PACKAGED):
            return f"{path.relative_to(PACKAGED).as_posix()} (shipyard's packaged template)"
        if path.is_absolute() and path.is_relative_to(self.templates.parent):
            return path.relative_to(self.templates.parent).as_posix()
        return f"{self.templates.name}/{filename}"

    def _template_line(self, exc: BaseException, fallback: str) -> tuple[str, int | None]:
        """File and line of the innermost template frame (jinja rewrites tracebacks to point there)."""
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
        if frames:
            return self._display(frames[-1].filename), frames[-1].lineno
        return self._display(fallback), None


def plain_dockerfile(path: Path, labels: Mapping[str, str]) -> str:
    """The team's own Dockerfile as it is, with shipyard's labels appended: a ``LABEL`` step at the end
    changes no step before it, so the build cache of the Dockerfile's own steps stays valid."""
    text = path.read_text(encoding="utf-8")
    lines = [f"LABEL {name}={json.dumps(value)}" for name, value in labels.items()]
    return text.rstrip("\n") + "\n# added by shipyard: the release's labels\n" + "\n".join(lines) + "\n"


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
