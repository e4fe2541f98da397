"""The catalog: one TOML file at the project root listing every image to build."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..dag import toposort
from ..errors import ConfigError, CycleError
from .reader import Table, did_you_mean, load_document

CATALOG_FILE = "shipyard.toml"
BASE_PREFIX = "base:"
IMAGE_NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
HTTP_PATH_RE = re.compile(r"^/[\x21-\x7e]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

Kind = Literal["family", "service"]
Protocol = Literal["http", "websocket"]


@dataclass(frozen=True)
class Golden:
    """A real inference request and the answer it must produce (fields compared as a subset)."""

    path: str
    method: str
    request: Any
    expect: Mapping[str, Any]


@dataclass(frozen=True)
class Service:
    port: int
    protocol: Protocol
    health: str
    module: str
    golden: Golden
    ready_timeout_s: float = 60.0
    slo_p95_ms: float = 500.0


@dataclass(frozen=True)
class ImageSpec:
    name: str
    kind: Kind
    template: str
    context: Path
    parent: str
    lock: Path | None = None
    size_budget_mb: int | None = None
    service: Service | None = None
    description: str = ""
    build_secrets: tuple[str, ...] = ()  # env vars passed to the build as BuildKit secrets of the same id

    @property
    def parent_is_base(self) -> bool:
        return self.parent.startswith(BASE_PREFIX)

    @property
    def base_role(self) -> str:
        return self.parent.removeprefix(BASE_PREFIX)


@dataclass(frozen=True)
class Catalog:
    path: Path
    project_name: str
    source: str
    namespace: str
    images: Mapping[str, ImageSpec] = field(default_factory=dict)

    def image(self, name: str) -> ImageSpec:
        try:
            return self.images[name]
        except KeyError:
            raise ConfigError(
                f"--image: unknown image {name!r}{did_you_mean(name, self.images)}; "
                f"the catalog has: {', '.join(self.images)}"
            ) from None


IMAGE_KEYS = (
    "kind",
    "template",
    "context",
    "parent",
    "lock",
    "size_budget_mb",
    "service",
    "description",
    "build_secrets",
)
SECRET_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SERVICE_KEYS = ("port", "protocol", "health", "module", "golden", "ready_timeout_s", "slo_p95_ms")
GOLDEN_KEYS = ("path", "method", "request", "expect")


def _parse_golden(t: Table, protocol: str) -> Golden:
    t.only(GOLDEN_KEYS)
    path = t.req("path", str, expected="an absolute path like /v1/predict")
    if not HTTP_PATH_RE.match(path):
        raise t.error("path", f"expected an absolute path like /v1/predict, got {path!r}")
    method = t.opt("method", str, "POST" if protocol == "http" else "WS").upper()
    if protocol == "http" and method not in ("GET", "POST", "PUT"):
        raise t.error("method", f"expected GET, POST or PUT, got {method!r}")
    if "request" not in t.data:
        raise t.error("request", "missing (required): the request body to send")
    return Golden(
        path=path, method=method, request=t.data["request"], expect=dict(t.table("expect", required=True).data)
    )


def _parse_service(t: Table) -> Service:
    t.only(SERVICE_KEYS)
    port = t.req("port", int, expected="a TCP port 1-65535")
    if not 1 <= port <= 65535:
        raise t.error("port", f"expected a TCP port 1-65535, got {port}")
    protocol = t.opt("protocol", str, "http")
    if protocol not in ("http", "websocket"):
        raise t.error("protocol", f'expected "http" or "websocket", got {protocol!r}')
    health = t.req("health", str, expected="an absolute path like /health (the canary polls it)")
    if not HTTP_PATH_RE.match(health):
        raise t.error("health", f"expected an absolute path like /health, got {health!r}")
    module = t.req("module", str, expected="the Python module of the service, e.g. my_service")
    if not MODULE_RE.match(module):
        raise t.error("module", f"expected a Python module name, got {module!r}")
    return Service(
        port=port,
        protocol=protocol,  # type: ignore[arg-type]
        health=health,
        module=module,
        golden=_parse_golden(t.table("golden", required=True), protocol),
        ready_timeout_s=t.opt("ready_timeout_s", float, 60.0),
        slo_p95_ms=t.opt("slo_p95_ms", float, 500.0),
    )


def _parse_image(t: Table, name: str, root: Path, templates: Path) -> ImageSpec:
    t.only(IMAGE_KEYS)
    if not IMAGE_NAME_RE.match(name):
        raise t.error(None, f"image name {name!r}: use lowercase letters, digits, '.', '_' and '-'")
    kind = t.req("kind", str, expected='"family" or "service"')
    if kind not in ("family", "service"):
        raise t.error("kind", f'expected "family" or "service", got {kind!r}')
    template = t.req("template", str, expected="a template file in dockerfiles/")
    if not (templates / template).is_file():
        raise t.error("template", f"{templates.relative_to(root) / template} does not exist")
    context = root / t.req("context", str, expected="the build context directory, relative to the project")
    if not context.is_dir():
        raise t.error("context", f"directory {t.data['context']!r} does not exist; expected a directory of the project")
    lock = None
    if "lock" in t.data:
        lock = context / t.req("lock", str)
        if not lock.is_file():
            raise t.error("lock", f"{lock.relative_to(root)} does not exist")
    budget = t.data.get("size_budget_mb")
    if budget is not None and (t.req("size_budget_mb", int) <= 0):
        raise t.error("size_budget_mb", f"expected a positive number of MB, got {budget}")
    build_secrets = t.str_list("build_secrets")
    for i, secret in enumerate(build_secrets):
        if not SECRET_ID_RE.match(secret):
            raise t.error(f"build_secrets[{i}]", f"expected an environment variable name, got {secret!r}")
    service = None
    if kind == "service":
        service = _parse_service(t.table("service", required=True))
    elif "service" in t.data:
        raise t.error("service", 'only images of kind "service" have a service table')
    return ImageSpec(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        template=template,
        context=context,
        parent=t.req("parent", str, expected="another image of the catalog or base:<role>"),
        lock=lock,
        size_budget_mb=budget,
        service=service,
        description=t.opt("description", str, ""),
        build_secrets=tuple(build_secrets),
    )


def load_catalog(root: Path) -> Catalog:
    path = root / CATALOG_FILE
    doc = load_document(path, display=CATALOG_FILE)
    doc.only(("project", "images"))
    project = doc.table("project")
    project.only(("name", "source", "namespace"))
    namespace = project.opt("namespace", str, "shipyard")
    if not re.match(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*$", namespace):
        raise project.error("namespace", f"not a valid repository path component: {namespace!r}")
    images_t = doc.table("images", required=True)
    images = {}
    for name in images_t.data:
        images[name] = _parse_image(images_t.table(name, required=True), name, root, root / "dockerfiles")
    for spec in images.values():
        if not spec.parent_is_base and spec.parent not in images:
            raise images_t.error(
                f"{spec.name}.parent",
                f"unknown image {spec.parent!r}{did_you_mean(spec.parent, images)}"
                f"; use another image of the catalog or base:<role> for a profile base",
            )
    try:
        toposort({name: [] if spec.parent_is_base else [spec.parent] for name, spec in images.items()})
    except CycleError as exc:
        raise images_t.error(
            f"{exc.cycle[0]}.parent",
            f"parents form a cycle: {' -> '.join(exc.cycle)}; expected a chain that ends at base:<role>",
        ) from None
    return Catalog(
        path=path,
        project_name=project.opt("name", str, root.resolve().name),
        source=project.opt("source", str, ""),
        namespace=namespace,
        images=images,
    )
