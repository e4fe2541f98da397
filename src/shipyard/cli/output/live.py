"""A person at a terminal: a rich ``Live`` view of the build DAG (a row per unit with its state and elapsed
time), rich tables, and the other lines scrolling above it; the view gives way to the summary table on
success and keeps its last frame on a failure."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from rich import box
from rich.console import Console as RichConsole
from rich.console import Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from ...events import Event, EventKind
from ..console import Console
from .dag import ACTIVE, DagState, UnitState

# drawn by the view; printed as lines only when no view is up
DRAWN: frozenset[EventKind] = frozenset(
    {"unit.checking", "unit.reusing", "unit.step", "unit.built", "unit.attested", "unit.skipped"}
)
MARKS = {"waiting": ("·", "dim"), "done": ("✓", "green"), "failed": ("✗", "bold red"), "skipped": ("–", "yellow")}
LABELS = {
    "checking": "checking inputs",
    "reusing": "reusing (inputs unchanged)",
    "exporting": "exporting the image",
    "pushing": "pushing",
    "caching": "exporting the build cache",
}


class DagView:
    def __init__(self, state: DagState, console: RichConsole) -> None:
        self.state = state
        self.console = console
        self.spinner = Spinner("dots", style="cyan")

    def render(self, final: bool = False) -> RenderableType:
        units, status, now = self.state.snapshot()
        if not units:
            return Text(status or "planning …", style="dim")
        shown = self._visible(units)
        names = [unit.prefix + (unit.key if not unit.prefix else unit.key.split("/", 1)[-1]) for unit in shown]
        # fixed widths but the state's: it takes the rest of the line and is cut, never wrapped
        rows = Table.grid(padding=(0, 1), expand=True)
        rows.add_column(width=1, no_wrap=True)
        rows.add_column(width=min(48, max(map(len, names), default=10)), no_wrap=True, overflow="ellipsis")
        rows.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        rows.add_column(width=7, no_wrap=True, justify="right")
        for unit, name in zip(shown, names, strict=True):
            elapsed = unit.elapsed(now)
            rows.add_row(
                self._mark(unit, final),
                Text(name),
                self._state_text(unit),
                Text(f"{elapsed:.1f}s" if elapsed is not None else "", style="dim"),
            )
        parts: list[RenderableType] = [rows]
        if len(shown) < len(units):
            parts.append(Text(f"  … {len(units) - len(shown)} more units done or waiting", style="dim"))
        parts.append(self._footer(units, now))
        if status and not final:
            parts.append(Text(status, style="dim", overflow="ellipsis", no_wrap=True))
        return Group(*parts)

    def _visible(self, units: list[UnitState]) -> list[UnitState]:
        """All rows when they fit the terminal; else the active and failed ones first."""
        room = max(3, self.console.height - 4)
        if len(units) <= room:
            return units
        busy = [u for u in units if u.state in ACTIVE or u.state == "failed"]
        return busy[:room]

    def _mark(self, unit: UnitState, final: bool) -> RenderableType:
        if unit.state in MARKS:
            mark, style = MARKS[unit.state]
            return Text(mark, style=style)
        return Text("…", style="cyan") if final else self.spinner

    def _state_text(self, unit: UnitState) -> Text:
        if unit.state == "building":
            return Text(f"building: {unit.step}" if unit.step else "building", style="cyan")
        if unit.state == "attesting":
            return Text(f"attesting (SBOM)  {unit.detail}", style="cyan")
        if unit.state == "done":
            return Text(unit.detail or "done", style="green")
        if unit.state == "failed":
            return Text(f"failed: {unit.detail}", style="red")
        if unit.state == "skipped":
            return Text(f"skipped: {unit.detail}", style="yellow")
        if unit.state == "waiting":
            return Text("waiting", style="dim")
        return Text(LABELS.get(unit.state, unit.state), style="cyan")

    def _footer(self, units: list[UnitState], now: float) -> RenderableType:
        total = len(units) or 1
        counts: dict[str, int] = {}
        for unit in units:
            group = "active" if unit.state in ACTIVE else unit.state
            counts[group] = counts.get(group, 0) + 1
        finished = sum(counts.get(s, 0) for s in ("done", "failed", "skipped"))
        words = [f"{finished}/{len(units)} units"]
        words += [f"{counts[s]} {s}" for s in ("active", "waiting", "failed", "skipped") if counts.get(s)]
        seconds = int(now - self.state.started)
        words.append(f"{seconds // 60}:{seconds % 60:02d}")
        line = Table.grid(padding=(0, 1))
        line.add_row(
            ProgressBar(total=total, completed=finished, width=30),
            Text(" · ".join(words), style="bold red" if counts.get("failed") else "bold"),
        )
        return line


class TtyConsole(Console):
    def __init__(self, verbosity: int, *, rich_console: RichConsole | None = None, **kwargs: Any) -> None:
        super().__init__(verbosity, **kwargs)
        self.rich = rich_console or RichConsole(highlight=False, emoji=False)
        self._state: DagState | None = None

    def write(self, text: str) -> None:
        with self._lock:
            self.rich.print(Text(text), soft_wrap=True)  # Text: "[1/8]" is not markup

    def event(self, event: Event) -> None:
        state = self._state
        if state is not None:
            state.apply(event)
            if event.kind in DRAWN:
                return
        super().event(event)

    @contextlib.contextmanager
    def live_build(self) -> Iterator[None]:
        if self.verbosity < 0 or not self.rich.is_terminal:
            yield
            return
        state = DagState(self.clock)
        view = DagView(state, self.rich)
        self._state = state
        try:
            with Live(console=self.rich, get_renderable=view.render, refresh_per_second=8, transient=True):
                yield
        except BaseException:
            self.rich.print(view.render(final=True))
            raise
        finally:
            self._state = None

    def table(self, rows: Sequence[tuple[str, ...]]) -> None:
        if self.verbosity <= self.SILENT:
            return
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for header in rows[0]:
            table.add_column(header, overflow="fold")
        for row in rows[1:]:
            table.add_row(*(Text(cell, style=_cell_style(cell)) for cell in row))
        with self._lock:
            self.rich.print(table)


def _cell_style(cell: str) -> str:
    return "red" if cell.startswith("FAIL") else "green" if cell == "pass" else ""
