"""The terminal's live DAG view: unit states from events, the tree, the frame, and what scrolls above it."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from rich.console import Console as RichConsole

from shipyard.cli.output.dag import DagState
from shipyard.cli.output.live import DagView, TtyConsole
from shipyard.events import Event

UNITS = ["cpu/base-python", "cpu/family-web", "cpu/family-ml", "cpu/svc", "pc2/base-python", "pc2/family-web"]
PARENTS = {
    "cpu/base-python": None,
    "cpu/family-web": "cpu/base-python",
    "cpu/family-ml": "cpu/family-web",
    "cpu/svc": "cpu/family-web",
    "pc2/base-python": None,
    "pc2/family-web": "pc2/base-python",
}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def planned(clock: Clock, attest: bool = True) -> DagState:
    state = DagState(clock)
    state.apply(Event("plan", "release x", data={"units": UNITS, "parents": PARENTS, "attest": attest}))
    return state


def ev(state: DagState, kind: str, unit: str, **data: object) -> None:
    state.apply(Event(kind, f"{unit}: {kind}", unit=unit, data=data))


def record(**fields: object) -> SimpleNamespace:
    return SimpleNamespace(**{"reused_from": "", "steps": 3, "cache_hits": 1, "digest": "sha256:" + "a" * 64} | fields)


def test_a_unit_goes_from_waiting_through_its_build_to_done() -> None:
    clock = Clock()
    state = planned(clock)
    seen = [state.units["cpu/base-python"].state]
    ev(state, "unit.checking", "cpu/base-python")
    seen.append(state.units["cpu/base-python"].state)
    ev(state, "unit.started", "cpu/base-python", reasons=["no earlier build of this unit"])
    ev(state, "unit.step", "cpu/base-python", step="RUN pip install", phase="building")
    unit = state.units["cpu/base-python"]
    seen.append(f"{unit.state}: {unit.step}")
    for phase in ("exporting", "pushing", "caching"):
        ev(state, "unit.step", "cpu/base-python", step="RUN pip install", phase=phase)
        seen.append(state.units["cpu/base-python"].state)
    clock.now += 12
    ev(state, "unit.built", "cpu/base-python", record=record())
    seen.append(state.units["cpu/base-python"].state)
    clock.now += 3
    ev(state, "unit.attested", "cpu/base-python")
    unit = state.units["cpu/base-python"]
    seen.append(unit.state)
    assert seen == [
        "waiting",
        "checking",
        "building: RUN pip install",
        "exporting",
        "pushing",
        "caching",
        "attesting",
        "done",
    ]
    assert unit.detail == "built (1/3 steps cached) sha256:aaaaaaaaaaaa"
    assert unit.elapsed(clock.now + 50) == 15.0  # stops counting when done


def test_attested_before_built_and_no_attestations() -> None:
    state = planned(Clock())
    ev(state, "unit.attested", "cpu/base-python")  # the attacher's thread can win the race
    assert state.units["cpu/base-python"].state == "waiting"
    ev(state, "unit.built", "cpu/base-python", record=record(reused_from="20250110-1a2b3c4d"))
    assert (state.units["cpu/base-python"].state, state.units["cpu/base-python"].detail) == (
        "done",
        "reused 20250110-1a2b3c4d",
    )
    unattested = planned(Clock(), attest=False)
    ev(unattested, "unit.built", "cpu/svc", record=record())
    assert unattested.units["cpu/svc"].state == "done"


def test_a_failure_skips_everything_below_it_at_once() -> None:
    state = planned(Clock())
    ev(state, "unit.failed", "cpu/family-web", error="cpu/family-web: docker buildx build failed (exit 1)\ntail")
    states = {k: (u.state, u.detail) for k, u in state.units.items()}
    assert states["cpu/family-web"] == ("failed", "docker buildx build failed (exit 1)")
    assert states["cpu/family-ml"] == states["cpu/svc"] == ("skipped", "cpu/family-web failed")
    assert states["cpu/base-python"][0] == states["pc2/family-web"][0] == "waiting"


def test_events_of_units_outside_the_plan_and_without_a_unit() -> None:
    state = planned(Clock())
    ev(state, "unit.started", "cpu/not-planned")
    state.apply(Event("base.building", "building local base debian-bookworm-python"))
    state.apply(Event("command", "+ docker buildx build …"))
    assert "cpu/not-planned" not in state.units
    assert state.status == "building local base debian-bookworm-python"


def render(state: DagState, width: int = 100, final: bool = False) -> str:
    rich = RichConsole(file=io.StringIO(), width=width, height=40, color_system=None, force_terminal=True)
    rich.print(DagView(state, rich).render(final=final))
    return "\n".join(line.rstrip() for line in rich.file.getvalue().splitlines())  # type: ignore[attr-defined]


def test_the_frame_draws_the_tree_states_times_and_progress() -> None:
    clock = Clock()
    state = planned(clock)
    ev(state, "unit.checking", "cpu/base-python")
    ev(state, "unit.built", "cpu/base-python", record=record(reused_from="20250110-1a2b3c4d"))
    ev(state, "unit.attested", "cpu/base-python")
    ev(state, "unit.started", "cpu/family-web")
    ev(state, "unit.step", "cpu/family-web", step="RUN pip install --no-index " + "x" * 200, phase="building")
    ev(state, "unit.failed", "pc2/base-python", error="pc2/base-python: exit 1")
    clock.now += 75
    frame = render(state, final=True).splitlines()
    assert frame[0].startswith("✓ cpu/base-python") and "reused 20250110-1a2b3c4d" in frame[0]
    assert frame[1].startswith("… └─ family-web") and "building: RUN pip install --no-index xxx" in frame[1]
    assert frame[1].endswith("75.0s") and "x…" in frame[1]  # the step is cut to the width, the time stays
    assert frame[2].startswith("·    ├─ family-ml") and "waiting" in frame[2]
    assert frame[3].startswith("·    └─ svc")
    assert frame[4].startswith("✗ pc2/base-python") and "failed: exit 1" in frame[4]
    assert frame[5].startswith("– └─ family-web") and "skipped: pc2/base-python failed" in frame[5]
    assert "3/6 units · 1 active · 2 waiting · 1 failed · 1 skipped · 1:15" in frame[6]
    assert all(len(line) <= 100 for line in frame)


def test_a_dag_taller_than_the_terminal_shows_the_busy_units() -> None:
    state = DagState(Clock())
    keys = [f"cpu/svc-{i}" for i in range(60)]
    state.apply(Event("plan", "p", data={"units": keys, "parents": {}}))
    ev(state, "unit.started", "cpu/svc-42")
    frame = render(state)
    assert "svc-42" in frame and "svc-0 " not in frame and "… 59 more units done or waiting" in frame


def tty(verbosity: int = 0) -> tuple[TtyConsole, io.StringIO]:
    out = io.StringIO()
    rich = RichConsole(file=out, width=100, height=40, color_system=None, force_terminal=True)
    return TtyConsole(verbosity, rich_console=rich), out


def test_while_the_view_is_up_drawn_events_do_not_scroll() -> None:
    console, out = tty()
    with console.live_build():
        console.event(Event("plan", "release x: 6 units", data={"units": UNITS, "parents": PARENTS, "attest": True}))
        console.event(
            Event("unit.started", "[2/6] cpu/family-web: building (context files changed: a.py)", unit="cpu/family-web")
        )
        console.event(Event("unit.step", "cpu/family-web: RUN x", unit="cpu/family-web", data={"step": "RUN x"}))
        console.event(Event("unit.built", "[2/6] cpu/family-web: built in 3.0s", unit="cpu/family-web"))
        assert console._state is not None and console._state.units["cpu/family-web"].state == "attesting"
    text = out.getvalue()
    assert "release x: 6 units" in text and "building (context files changed: a.py)" in text
    assert "built in 3.0s" not in text and "RUN x" not in text.split("building (context")[0]
    console.event(Event("unit.built", "[2/6] cpu/family-web: built in 3.0s", unit="cpu/family-web"))
    assert "built in 3.0s" in out.getvalue()  # no view up: a plain line again


def test_on_a_failure_the_last_frame_stays() -> None:
    console, out = tty()
    with pytest.raises(KeyboardInterrupt), console.live_build():
        console.event(Event("plan", "p", data={"units": UNITS, "parents": PARENTS}))
        console.event(Event("unit.failed", "x", unit="cpu/family-web", data={"error": "cpu/family-web: boom"}))
        raise KeyboardInterrupt
    tail = out.getvalue().rsplit("\x1b[2K", 1)[-1]  # after the transient view was erased
    assert "failed: boom" in tail and "skipped: cpu/family-web failed" in tail


def test_quiet_has_no_view_and_tables_are_rich() -> None:
    console, out = tty(-1)
    with console.live_build():
        assert console._state is None
    console.table([("unit", "verdict"), ("cpu/a [1/2]", "pass"), ("cpu/b", "FAIL CVE-1")])
    lines = [line.strip() for line in out.getvalue().splitlines() if line.strip()]
    assert lines[0].split() == ["unit", "verdict"] and "cpu/a [1/2]" in lines[2]  # brackets are not markup
