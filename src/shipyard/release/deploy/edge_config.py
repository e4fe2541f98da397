"""The edge proxy's desired state (which colour of each service takes traffic, kept as JSON in the edge's
volume) and the HAProxy config that serves it, switched at run time without closing a listener."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

COLOURS = ("blue", "green")
CONFIG_DIR = "/etc/shipyard-edge"
SOCKET = "/run/shipyard-edge/admin.sock"
IDLE_SOCKET = "/run/shipyard-edge/idle.sock"  # the listener of an edge that routes no service yet
PARKED = "127.0.0.1:1"  # the address of a colour that runs nothing: never ready, never connected to


def other(colour: str) -> str:
    """The colour a service moves to from ``colour`` (blue for a service that has none yet).

    >>> other("blue"), other("")
    ('green', 'blue')
    """
    return COLOURS[1 - COLOURS.index(colour)] if colour in COLOURS else COLOURS[0]


@dataclass(frozen=True)
class Route:
    """One service as the edge serves it: users call ``port``; ``live`` takes the traffic."""

    port: int
    live: str  # blue or green
    upstreams: Mapping[str, str] = field(default_factory=dict)  # colour -> host:port of its container
    hold_s: float = 30.0

    def upstream(self, colour: str) -> str:
        return self.upstreams.get(colour, PARKED)

    def switched(self, colour: str, address: str) -> Route:
        """The route with ``colour`` at ``address`` taking the traffic."""
        return replace(self, live=colour, upstreams={**self.upstreams, colour: address})


@dataclass(frozen=True)
class EdgeState:
    routes: Mapping[str, Route] = field(default_factory=dict)  # service -> its route
    drain_s: float = 30.0  # an old worker (after a reload) keeps its open connections this long

    def with_route(self, service: str, route: Route | None) -> EdgeState:
        routes = {k: v for k, v in self.routes.items() if k != service}
        if route is not None:
            routes[service] = route
        return replace(self, routes=dict(sorted(routes.items())))

    def listeners(self) -> dict[str, int]:
        """What a reload changes: the frontends and their ports (a switch changes none of them)."""
        return {service: route.port for service, route in self.routes.items()}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> EdgeState:
        data = json.loads(text)
        routes = {name: Route(**route) for name, route in (data.get("routes") or {}).items()}
        return cls(routes=routes, drain_s=float(data.get("drain_s", 30.0)))


def backend(service: str) -> str:
    return f"be_{service}"


def render(state: EdgeState) -> str:
    """haproxy.cfg for ``state``: deterministic, so an unchanged state renders the same bytes.

    >>> print(render(EdgeState({"api": Route(8080, "blue", {"blue": "127.0.0.1:20001"}, 5)})).split("frontend")[1])
     fe_api
        bind :8080
        default_backend be_api
    <BLANKLINE>
    backend be_api
        retries 5
        http-response set-header X-Shipyard-Colour %[srv_name]
        server blue 127.0.0.1:20001
        server green 127.0.0.1:1 disabled
    <BLANKLINE>
    """
    lines = [
        "# written by shipyard: the edge of a deploy target (see edge.json beside it)",
        "global",
        "    master-worker",
        f"    stats socket {SOCKET} mode 600 level admin expose-fd listeners",
        f"    hard-stop-after {math.ceil(state.drain_s) + 5}s",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",  # a refused connection is tried again after min(this, 1 s)
        "    timeout client 300s",
        "    timeout server 300s",
        "    timeout tunnel 1h",  # an open WebSocket stream
        "    timeout http-keep-alive 60s",
        "    option redispatch 1",  # every retry goes to the server that is live at that moment
        "    option http-server-close",  # a new server connection per request: none is idle when a service stops
        # on a reload the old worker keeps idle keep-alive clients until their next request (answered with
        # Connection: close), instead of closing them under a request already on its way
        "    option idle-close-on-response",
        "    retry-on conn-failure empty-response",  # a service that stopped (or closed) before answering
        "",
    ]
    for service, route in state.routes.items():
        lines += [f"frontend fe_{service}", f"    bind :{route.port}", f"    default_backend {backend(service)}", ""]
        lines += [f"backend {backend(service)}", f"    retries {max(1, math.ceil(route.hold_s))}"]
        lines.append("    http-response set-header X-Shipyard-Colour %[srv_name]")  # which colour answered
        for colour in COLOURS:
            parked = "" if colour == route.live else " disabled"
            lines.append(f"    server {colour} {route.upstream(colour)}{parked}")
        lines.append("")
    if not state.routes:  # HAProxy will not start with nothing to do: a listener on no port of the host
        lines += ["listen idle", f"    bind unix@{IDLE_SOCKET}", ""]
    return "\n".join(lines)


def switch_commands(service: str, before: Route | None, after: Route) -> list[str]:
    """The runtime API commands that turn ``before`` into ``after`` without a reload: the new live
    server's address, then ready, then the old one to maintenance (its open connections stay)."""
    be = backend(service)
    commands = []
    host, _, port = after.upstream(after.live).rpartition(":")
    commands.append(f"set server {be}/{after.live} addr {host} port {port}")
    commands.append(f"set server {be}/{after.live} state ready")
    for colour in COLOURS:
        if colour != after.live and (before is None or before.live == colour or colour in after.upstreams):
            commands.append(f"set server {be}/{colour} state maint")
    return commands
