"""The catalog: one TOML file at the project root listing every image to build."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..dag import toposort
from ..errors import ConfigError, CycleError
from .models import DEFAULT_MODEL_DIR, ModelSpec, check_model_dir, check_model_names, parse_models
from .policy import Policy, parse_policy, parse_skip_checks
from .profiles import check_build_args
from .reader import Table, did_you_mean, load_document, locate
from .targets import Target, parse_targets

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
    golden: Golden
    module: str = ""  # a Python service: ``python3 -m module``
    command: tuple[str, ...] = ()  # any other: the image's command (exec form); neither: the image's own CMD
    ready_timeout_s: float = 60.0
    slo_p95_ms: float = 500.0
    models: tuple[str, ...] = ()  # the catalog's models it is released with
    model_dir: str = DEFAULT_MODEL_DIR  # where it expects them, in its container


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
    profiles: tuple[str, ...] = ()  # the profiles it is built for; empty: every profile
    build_args: Mapping[str, str] = field(default_factory=dict)  # merged over the profile's (these win)
    skip_checks: Mapping[str, str] = field(default_factory=dict)  # verify check -> why this image skips it
    dockerfile: Path | None = None  # a plain Dockerfile (no Jinja): the template, read as it is

    def on(self, profile: str) -> bool:
        return not self.profiles or profile in self.profiles

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
    policy: Policy = Policy()
    targets: Mapping[str, Target] = field(default_factory=dict)
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    trusted_keys: tuple[Path, ...] = ()  # public keys (PEM) whose signatures promotion and deploy accept

    def services_of(self, profile: str) -> list[str]:
        """The services built for ``profile``, in catalog order."""
        return [name for name, spec in self.images.items() if spec.service is not None and spec.on(profile)]

    def models_for(self, images: Iterable[str]) -> list[str]:
        """The models the services among ``images`` are released with, in catalog order."""
        needed = {model for name in images if (service := self.images[name].service) for model in service.models}
        return [name for name in self.models if name in needed]

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
    "profiles",
    "build_args",
    "skip_checks",
)
SECRET_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SERVICE_KEYS = (
    "port", "protocol", "health", "module", "command", "golden", "ready_timeout_s", "slo_p95_ms", "models", "model_dir",
)  # fmt: skip
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


def _parse_service(t: Table, models: Mapping[str, ModelSpec]) -> Service:
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
    if "module" in t.data and "command" in t.data:
        raise t.error("command", "give either module (a Python service) or command (any other), not both")
    module = t.opt("module", str, "")
    if "module" in t.data and not MODULE_RE.match(module):
        raise t.error("module", f"expected a Python module name, got {module!r}")
    command = t.str_list("command")
    if "command" in t.data and not command:
        raise t.error("command", 'expected the service\'s command in exec form, e.g. ["/app/server", "--port", "8080"]')
    needs = t.str_list("models")
    check_model_names(t, "models", needs, models)
    model_dir = t.opt("model_dir", str, DEFAULT_MODEL_DIR)
    check_model_dir(t, "model_dir", model_dir)
    return Service(
        port=port,
        protocol=protocol,  # type: ignore[arg-type]
        health=health,
        module=module,
        command=tuple(command),
        golden=_parse_golden(t.table("golden", required=True), protocol),
        ready_timeout_s=t.opt("ready_timeout_s", float, 60.0),
        slo_p95_ms=t.opt("slo_p95_ms", float, 500.0),
        models=tuple(dict.fromkeys(needs)),
        model_dir=model_dir,
    )


def _parse_image(t: Table, name: str, root: Path, templates: Path, models: Mapping[str, ModelSpec]) -> ImageSpec:
    t.only(IMAGE_KEYS)
    if not IMAGE_NAME_RE.match(name):
        raise t.error(None, f"image name {name!r}: use lowercase letters, digits, '.', '_' and '-'")
    kind = t.req("kind", str, expected='"family" or "service"')
    if kind not in ("family", "service"):
        raise t.error("kind", f'expected "family" or "service", got {kind!r}')
    context = root / t.req("context", str, expected="the build context directory, relative to the project")
    if not context.is_dir():
        raise t.error("context", f"directory {t.data['context']!r} does not exist; expected a directory of the project")
    template = t.req("template", str, expected="a Jinja template in dockerfiles/ (NAME.j2) or a plain Dockerfile")
    dockerfile = None
    if template.endswith(".j2"):
        if not (templates / template).is_file():
            raise t.error("template", f"{templates.relative_to(root) / template} does not exist")
    else:  # a plain Dockerfile, in dockerfiles/ or in the image's own context
        found = [path for path in (templates / template, context / template) if path.is_file()]
        if not found:
            raise t.error(
                "template",
                f"no Dockerfile {template!r} in {templates.relative_to(root)}/ or in {context.relative_to(root)}/ "
                f"(a name ending in .j2 is a Jinja template)",
            )
        dockerfile = found[0]
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
    profiles = t.str_list("profiles")
    if "profiles" in t.data and not profiles:
        raise t.error("profiles", "expected at least one profile (leave the key out for every profile)")
    build_args = t.str_map("build_args")
    check_build_args(t, build_args)
    service = None
    if kind == "service":
        service = _parse_service(t.table("service", required=True), models)
        if dockerfile is None and not (service.module or service.command):
            raise t.error(
                "service.module",
                "missing: a Jinja-templated service needs module (Python) or command (any language) to run",
            )
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
        profiles=tuple(dict.fromkeys(profiles)),
        build_args=build_args,
        skip_checks=parse_skip_checks(t),
        dockerfile=dockerfile,
    )


def load_catalog(root: Path) -> Catalog:
    path = root / CATALOG_FILE
    doc = load_document(path, display=CATALOG_FILE)
    doc.only(("project", "policy", "images", "targets", "models"))
    project = doc.table("project")
    project.only(("name", "source", "namespace", "trusted_keys"))
    # read when a key is needed (config/keys.py), so commands that sign nothing work without the files
    trusted = [(root / name).resolve() for name in project.str_list("trusted_keys")]
    namespace = project.opt("namespace", str, "shipyard")
    if not re.match(r"^[a-z0-9]+(?:[._/-][a-z0-9]+)*$", namespace):
        raise project.error("namespace", f"not a valid repository path component: {namespace!r}")
    models = parse_models(doc.table("models"), root)
    images_t = doc.table("images", required=True)
    images = {}
    for name in images_t.data:
        images[name] = _parse_image(images_t.table(name, required=True), name, root, root / "dockerfiles", models)
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
        policy=parse_policy(doc.table("policy")),
        targets=parse_targets(doc.table("targets")),
        models=models,
        trusted_keys=tuple(trusted),
    )


def check_image_profiles(catalog: Catalog, profiles: Iterable[str]) -> None:
    """Each image's ``profiles`` name profiles of ``profiles/``, and a child is built only where its parent is."""
    known = list(profiles)

    def error(name: str, key: str, message: str) -> ConfigError:
        path = f"images.{name}.{key}"
        text = catalog.path.read_text(encoding="utf-8") if catalog.path.is_file() else ""  # only to say the line
        return ConfigError(f"{CATALOG_FILE}: {path}: {message}", file=CATALOG_FILE, line=locate(text, path) or None)

    for name, spec in catalog.images.items():
        for i, profile in enumerate(spec.profiles):
            if profile not in known:
                raise error(
                    name,
                    f"profiles[{i}]",
                    f"unknown profile {profile!r}{did_you_mean(profile, known)}; profiles/ has: {', '.join(known)}",
                )
        if spec.parent_is_base:
            continue
        parent = catalog.images[spec.parent]
        missing = [p for p in (spec.profiles or known) if not parent.on(p)]
        if missing:
            raise error(
                name,
                "profiles",
                f"{name} is built for {', '.join(missing)} but its parent {parent.name} is not "
                f"({parent.name}.profiles = {list(parent.profiles)}); add the profile to {parent.name} "
                f"or restrict {name} to {list(parent.profiles)}",
            )
