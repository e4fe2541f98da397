"""Deploy targets (``[targets.<name>]`` in the catalog): which engine runs which profile's services, in
which mode (Compose or Swarm) and strategy (blue-green, stop-first, in-place), on which ports, with which
runtime secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import ConfigError
from .reader import Table, did_you_mean

TARGET_KEYS = (
    "profile", "engine", "mode", "publish", "services", "canary", "secrets", "ports",
    "strategy", "drain_s", "hold_s", "proxy_image",
)  # fmt: skip
STRATEGIES = ("blue-green", "stop-first", "in-place")
DEFAULT_PROXY_IMAGE = "local:debian-bookworm-haproxy"
DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
LOOPBACK_REGISTRY_RE = re.compile(r"^(?:localhost|127\.0\.0\.1|\[::1\])(?::\d+)?/")
MODES = ("compose", "swarm")
PUBLISH_MODES = ("ingress", "host")
ENGINE_RE = re.compile(r"^(?:unix:///\S+|tcp://[^\s/]+|ssh://[^\s/]+|context:[A-Za-z0-9][A-Za-z0-9_.+-]*)$")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SECRET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Target:
    name: str
    profile: str
    engine: str
    services: tuple[str, ...] = ()  # empty: every service built for the profile
    canary: bool = False
    secrets: tuple[str, ...] = ()
    mode: str = "compose"  # compose: a Compose project on the engine; swarm: a stack on a swarm manager
    ports: Mapping[str, int] = field(default_factory=dict)  # service -> host port, where not its own port
    publish: str = "ingress"  # swarm: the routing mesh, or each task on a port of its own node ("host")
    strategy: str = "blue-green"  # compose: blue-green, stop-first or in-place
    drain_s: float = 30.0  # blue-green: how long the old containers keep their open requests and streams
    hold_s: float = 30.0  # the edge holds a request this long while its service restarts (stop-first)
    proxy_image: str = DEFAULT_PROXY_IMAGE  # the edge proxy's image: local:NAME or pinned by digest

    @property
    def has_edge(self) -> bool:
        """Traffic reaches this target's services through the edge proxy shipyard runs there."""
        return self.mode == "compose" and self.strategy != "in-place"


def parse_targets(t: Table) -> dict[str, Target]:
    targets = {}
    for name in t.data:
        entry = t.table(name, required=True)
        entry.only(TARGET_KEYS)
        if not NAME_RE.match(name):
            raise entry.error(None, f"target name {name!r}: use lowercase letters, digits and '-'")
        engine = entry.req("engine", str, expected="unix:///path, tcp://host:port, ssh://user@host or context:NAME")
        if not ENGINE_RE.match(engine):
            raise entry.error(
                "engine", f"expected unix:///path, tcp://host:port, ssh://user@host or context:NAME, got {engine!r}"
            )
        secrets = entry.str_list("secrets")
        for i, secret in enumerate(secrets):
            if not SECRET_RE.match(secret):
                raise entry.error(f"secrets[{i}]", f"expected an environment variable name, got {secret!r}")
        mode = entry.opt("mode", str, "compose")
        if mode not in MODES:
            raise entry.error("mode", f"expected one of {', '.join(MODES)}, got {mode!r}")
        publish = entry.opt("publish", str, "ingress")
        if publish not in PUBLISH_MODES:
            raise entry.error("publish", f"expected one of {', '.join(PUBLISH_MODES)}, got {publish!r}")
        if "publish" in entry.data and mode != "swarm":
            raise entry.error("publish", 'applies to mode = "swarm" only (Compose publishes on the host)')
        ports = entry.int_map("ports")
        for service, port in ports.items():
            if not 0 < port < 65536:
                raise entry.error(f"ports.{service}", f"expected a port number (1-65535), got {port}")
        strategy, drain_s, hold_s, proxy_image = _deploy_settings(entry, mode)
        targets[name] = Target(
            name=name,
            profile=entry.req("profile", str, expected="the profile whose images the target runs"),
            engine=engine,
            services=tuple(entry.str_list("services")),
            canary=entry.opt("canary", bool, False),
            secrets=tuple(secrets),
            mode=mode,
            ports=ports,
            publish=publish,
            strategy=strategy,
            drain_s=drain_s,
            hold_s=hold_s,
            proxy_image=proxy_image,
        )
    return targets


def _deploy_settings(entry: Table, mode: str) -> tuple[str, float, float, str]:
    """``strategy``, ``drain_s``, ``hold_s`` and ``proxy_image``, checked: Compose targets only."""
    for key in ("strategy", "drain_s", "hold_s", "proxy_image"):
        if key in entry.data and mode != "compose":
            raise entry.error(key, 'applies to mode = "compose" only (a swarm stack updates start-first itself)')
    strategy = entry.opt("strategy", str, "blue-green")
    if strategy not in STRATEGIES:
        raise entry.error(
            "strategy", f"expected one of {', '.join(STRATEGIES)}{did_you_mean(strategy, STRATEGIES)}, got {strategy!r}"
        )
    seconds = {}
    for key in ("drain_s", "hold_s"):
        value = entry.opt(key, float, 30.0)
        if not 0 < value <= 3600:
            raise entry.error(key, f"expected seconds above 0 (at most 3600), got {value:g}")
        seconds[key] = value
    proxy_image = entry.opt("proxy_image", str, DEFAULT_PROXY_IMAGE)
    local = proxy_image.startswith("local:")
    if not (local or DIGEST_RE.search(proxy_image) or LOOPBACK_REGISTRY_RE.match(proxy_image)):
        raise entry.error(
            "proxy_image",
            f"{proxy_image!r} is not pinned by digest: use IMAGE@sha256:<digest> (or local:NAME, built here)",
        )
    return strategy, seconds["drain_s"], seconds["hold_s"], proxy_image


def check_targets(targets: Mapping[str, Target], profiles: Iterable[str], services_of: Mapping[str, list[str]]) -> None:
    """Each target's profile exists and its services are services built for that profile."""
    known = list(profiles)
    for target in targets.values():
        where = f"shipyard.toml: targets.{target.name}"
        if target.profile not in known:
            raise ConfigError(
                f"{where}.profile: unknown profile {target.profile!r}{did_you_mean(target.profile, known)}; "
                f"profiles/ has: {', '.join(known)}"
            )
        built = list(services_of.get(target.profile, ()))
        for service in target.ports:
            if service not in (target.services or built):
                raise ConfigError(
                    f"{where}.ports.{service}: not a service this target runs{did_you_mean(service, built)}; "
                    f"it runs: {', '.join(target.services or built) or 'none'}"
                )
        for i, service in enumerate(target.services):
            if service not in built:
                raise ConfigError(
                    f"{where}.services[{i}]: {service!r} is not a service built for profile {target.profile}"
                    f"{did_you_mean(service, built)}; its services: {', '.join(built) or 'none'}"
                )
