"""A blue-green or stop-first deploy's plan: what the target runs now and each service's move to the
release (stay, other colour, leave), with the new colours' host ports, found before anything changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ...config.targets import Target
from ...errors import ConfigError
from ..engine import TargetEngine
from .colours import ColourContainer, candidate_ports, colour_containers, published_ports, settings_digest
from .compose import Placed
from .compose_apply import ComposeApplier
from .edge import Edge
from .edge_config import EdgeState, other


@dataclass(frozen=True)
class Move:
    """One service's move: from the colour that serves it now (``live``, None for a new service) to
    ``colour``; ``placed`` None when the target no longer runs it."""

    service: str
    live: ColourContainer | None
    colour: str
    placed: Placed | None
    reconfigured: bool = False


class EdgePlan:
    """The plan of one target behind its edge; ``read`` fills it from the engine, nothing is changed."""

    def __init__(
        self, target: Target, engine: TargetEngine, client: Any, edge: Edge, in_place: ComposeApplier, proxy_image: str
    ) -> None:
        self.target = target
        self.engine = engine
        self.client = client
        self.edge = edge
        self.in_place = in_place  # the target's project as the in-place strategy left it, if it did
        self.proxy_image = proxy_image

    def read(self, project: Mapping[str, Any], placed: Sequence[Placed], checks: Mapping[str, Any]) -> None:
        """What the engine runs and the edge serves, and each service's move from it to ``placed``."""
        self.checks = checks
        self.state = self.edge.state() or EdgeState(drain_s=self.target.drain_s)
        self.containers = colour_containers(self.client, self.target.name)
        self.legacy = self.in_place.running()
        self.in_sync = self.edge.in_sync(self.state)  # HAProxy serves its files (not an older config)
        moves = []
        for item in placed:
            live = self._live(item.service)
            wanted = settings_digest(project["services"][item.service])
            same = live is not None and live.image == item.ref and live.settings == wanted and live.healthy
            colour = live.colour if same and live is not None else other(live.colour if live else "green")
            reconfigured = live is not None and live.image == item.ref and not same
            moves.append(Move(item.service, live, colour, item, reconfigured))
        wanted_services = {item.service for item in placed}
        for service in sorted(set(self.state.routes) | set(self.containers)):
            if service not in wanted_services:
                moves.append(Move(service, self._live(service), "", None))
        self.moves = moves

    def _live(self, service: str) -> ColourContainer | None:
        colours = self.containers.get(service, {})
        route = self.state.routes.get(service)
        if route is not None:
            return colours.get(route.live)
        running = [c for c in colours.values() if c.status == "running"]
        return running[0] if len(running) == 1 else None

    @property
    def moving(self) -> list[Move]:
        return [m for m in self.moves if m.placed is not None and (m.live is None or m.colour != m.live.colour)]

    @property
    def leaving(self) -> list[Move]:
        return [m for m in self.moves if m.placed is None]

    def stale(self) -> list[tuple[str, str]]:
        """(service, colour) containers that serve nobody and are not about to: left by a killed run."""
        keep = {(m.service, m.live.colour) for m in self.moves if m.live is not None and m.placed is not None}
        return sorted((s, c) for s, colours in self.containers.items() for c in colours if (s, c) not in keep)

    def notes(self) -> list[str]:
        notes = []
        if self.legacy:
            ports = ", ".join(str(self.checks[s]["port"]) for s in sorted(self.checks))
            notes.append(
                f"  migrates from in-place to {self.target.strategy}: the edge takes over ports {ports} from the old "
                "containers (a gap of one restart, this once)"
            )
        if self.edge.container() is None:
            notes.append(f"  starts the edge proxy {self.edge.name} ({self.target.strategy})")
        stale = self.stale()
        if stale:
            notes.append(
                "  removes containers left by an unfinished deploy: " + ", ".join(f"{s} ({c})" for s, c in stale)
            )
        return notes

    @property
    def nothing_to_do(self) -> bool:
        return not self.moving and not self.leaving and not self.stale() and not self.legacy and self._edge_current()

    def _edge_current(self) -> bool:
        """The edge runs the wanted image, listens on every service's port and serves its state now (a
        restarted host may have left it on an older config)."""
        if self.edge.container() is None:
            return not self.checks
        ports = {s: int(c["port"]) for s, c in self.checks.items()}
        image = not self.proxy_image or self.edge.image() == self.proxy_image
        return self.state.listeners() == ports and image and self.in_sync

    def choose_ports(self) -> dict[str, int]:
        """A free host port for each moving service's new colour; ConfigError (nothing changed) when a port
        the edge must listen on is held by something else on the target's host."""
        owned = set(self.state.listeners().values()) if self.edge.container() is not None else set()
        freed = set(self.legacy_ports())
        wanted = {int(c["port"]) for c in self.checks.values()}
        used = published_ports(self.client) | wanted | owned
        candidates = {m.service: candidate_ports(self.target.name, m.service, m.colour, used) for m in self.moving}
        asked = sorted((wanted - owned - freed) | {p for ports in candidates.values() for p in ports})
        taken = set(self.edge.taken_ports(self.proxy_image, asked))
        blocked = sorted((wanted - owned - freed) & taken)
        if blocked:
            service = next(s for s, c in self.checks.items() if int(c["port"]) in blocked)
            raise ConfigError(
                f"target {self.target.name}: port {blocked[0]} ({service}) is taken on {self.engine.url}'s host by "
                f"something other than shipyard; free it or set targets.{self.target.name}.ports.{service}; "
                "nothing was changed"
            )
        chosen: dict[str, int] = {}
        for service, ports in candidates.items():
            free = [p for p in ports if p not in taken and p not in chosen.values()]
            if not free:
                raise ConfigError(f"target {self.target.name}: no free host port for {service}'s new colour")
            chosen[service] = free[0]
        return chosen

    def legacy_ports(self) -> list[int]:
        """The host ports the in-place project's containers hold (the edge takes them over)."""
        if not self.legacy:
            return []
        return [int(c["port"]) for s, c in self.checks.items() if any(r.service == s for r in self.legacy)]
