"""--json on every command (stdout is one JSON document) and what -q / default / -v / -vv show."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from shipyard.cli.console import Console, print_summary
from shipyard.cli.main import main
from shipyard.cli.parser import make_parser
from shipyard.events import Event
from shipyard.record import ReleaseRecord, UnitRecord
from tests.conftest import make_project


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in make_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_takes_json_before_or_after_its_name() -> None:
    for name, parser in subcommands().items():
        assert "--json" in parser._option_string_actions, name
    assert make_parser().parse_args(["--json", "history", "--channel", "c"]).json is True
    assert make_parser().parse_args(["history", "--channel", "c", "--json"]).json is True
    assert make_parser().parse_args(["history", "--channel", "c"]).json is False


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SHIPYARD_REGISTRY", "registry.invalid:5999/acme")  # nothing answers there
    monkeypatch.setenv("SHIPYARD_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SHIPYARD_BASE_OVERRIDE", "")  # pc2's pinned upstream bases: no registry look-up
    for name in ("CI", "GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    return make_project(tmp_path / "p", services=("affective-processing-center",), profiles=("pc2",))


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert err == ""  # no progress anywhere without -v
    return json.loads(out)  # exactly one document: json.loads refuses trailing text


def test_render_json(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--json", "--project", str(env), "render")
    assert isinstance(data, dict)
    assert data["rendered"]["pc2/family-web"] == ".shipyard/rendered/pc2/family-web/Dockerfile"
    assert (env / data["rendered"]["pc2/family-web"]).is_file()


def test_bake_file_json(
    env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shipyard.build.bake.Wheelhouse.prepare", lambda self, lock, py, plat: (tmp_path / "w", False))
    out = tmp_path / "bake.json"
    data = run_json(capsys, "--project", str(env), "bake-file", "--output", str(out), "--json")
    assert data == {"path": str(out)} and out.is_file()


def test_dry_run_json_lists_the_exact_commands(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "--project", str(env), "build", "--dry-run", "--json")
    assert isinstance(data, dict) and data["dry_run"] is True and data["release"].startswith("20250111-")
    builds = [argv for argv in data["commands"] if argv[:3] == ["docker", "buildx", "build"]]
    assert len(builds) == 4 and "--push" in builds[0]


def test_json_with_v_puts_progress_on_stderr(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--project", str(env), "build", "--dry-run", "--json", "-v"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["dry_run"] is True
    assert "4 units (pc2)" in err and "+ docker buildx build" in err


def test_errors_under_json_are_the_one_line_on_stderr(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--project", str(env), "build", "--profile", "pc3", "--json", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("shipyard: error: --profile: unknown profile 'pc3'") and err.count("\n") == 1


EVENTS = [
    Event("plan", "release x: 4 units"),
    Event("unit.checking", "[1/4] cpu/a: computing its input digest", unit="cpu/a"),
    Event("unit.started", "[1/4] cpu/a: building (no earlier build)", unit="cpu/a"),
    Event("unit.step", "cpu/a: RUN pip install", unit="cpu/a"),
    Event("build.output", "#8 [2/3] RUN pip install", unit="cpu/a"),
    Event("unit.built", "[1/4] cpu/a: built in 3.0s", unit="cpu/a"),
    Event("unit.failed", "[2/4] cpu/b: FAILED (exit 1)", unit="cpu/b"),
    Event("record", "release record: r.json"),
    Event("promote.done", "stable -> x: 4 tag(s) moved"),
]


@pytest.mark.parametrize(
    ("verbosity", "shown"),
    [
        (Console.SILENT, []),
        (-1, ["unit.failed", "record", "promote.done"]),
        (0, ["plan", "unit.started", "unit.built", "unit.failed", "record", "promote.done"]),
        (
            1,
            [
                "plan",
                "unit.checking",
                "unit.started",
                "unit.step",
                "unit.built",
                "unit.failed",
                "record",
                "promote.done",
            ],
        ),
        (2, [e.kind for e in EVENTS]),
    ],
)
def test_what_each_level_shows(verbosity: int, shown: list[str]) -> None:
    out = io.StringIO()
    console = Console(verbosity, stream=out, clock=lambda: 0.0)
    for event in EVENTS:
        console.event(event)
    console.info("verifying 4 units")  # what a command is about to do: progress
    console.line("verify: all 12 checks passed")  # its result
    console.command("+ docker buildx build")
    printed = out.getvalue()
    assert [e.kind for e in EVENTS if e.message in printed] == shown
    assert ("verifying 4 units" in printed) == (verbosity >= 0)
    assert ("verify: all 12 checks passed" in printed) == (verbosity >= -1)
    assert ("+ docker buildx build" in printed) == (verbosity >= 1)


def test_promote_and_rollback_json_are_the_ledger_entries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from shipyard.config.keys import development_key
    from shipyard.config.registry import parse_registry
    from shipyard.oci.client import RegistryClient
    from shipyard.record import save_record
    from tests.memregistry import MemoryRegistry
    from tests.unit.test_trust import signed_release

    mem = MemoryRegistry()
    monkeypatch.setenv("SHIPYARD_STATE_DIR", str(tmp_path / "state"))
    signer = development_key(tmp_path / "state")  # what a fresh machine signs with on the local registry
    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=mem.transport())
    monkeypatch.setattr(
        "shipyard.cli.shared.RegistryClient",
        lambda target, credentials=None: RegistryClient(
            parse_registry("localhost:5000/acme"), transport=mem.transport()
        ),
    )
    monkeypatch.setenv("SHIPYARD_REGISTRY", "localhost:5000/acme")
    summary = tmp_path / "summary.md"
    for name, value in {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}.items():
        monkeypatch.setenv(name, value)
    for tag in ("20250110-aaaaaaaa", "20250111-bbbbbbbb"):
        save_record(tmp_path, signed_release(client, mem, tag, signer))
        assert main(["--project", str(tmp_path), "promote", tag, "--channel", "stable", "--json"]) == 0
        entry = json.loads(capsys.readouterr().out)
        assert (entry["channel"], entry["action"], entry["release"], entry["state"]) == (
            "stable",
            "promote",
            tag,
            "complete",
        )
        assert entry["digests"]["cpu/svc"] == mem.tags[("acme/cpu/svc", tag)]
    assert main(["--project", str(tmp_path), "--json", "rollback", "--channel", "stable"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert (entry["action"], entry["release"]) == ("rollback", "20250110-aaaaaaaa")
    # under GitHub Actions, each promotion's table names the channel, --json or not
    assert summary.read_text().count("### shipyard promote: release `") == 2
    assert "| pc2 | " in summary.read_text() and "| stable |" in summary.read_text()


def _unit(profile: str, image: str, *, reused_from: str = "") -> UnitRecord:
    return UnitRecord(
        profile=profile,
        image=image,
        kind="family",
        platform="linux/amd64",
        repository=f"r/{profile}/{image}",
        tag="t",
        digest="sha256:" + "a" * 64,
        size=10**6,
        parent="",
        duration_s=1.0,
        steps=3,
        cache_hits=0,
        reused_from=reused_from,
    )


def test_a_subset_build_counts_what_it_did_apart_from_what_the_record_holds() -> None:
    record = ReleaseRecord(release="20250111-abcdef12", revision="x", created="c", registry="localhost:5000/s")
    record.units = {
        "cpu/base": _unit("cpu", "base", reused_from="20250110-00000000"),
        "cpu/web": _unit("cpu", "web"),
        "pc2/base": _unit("pc2", "base", reused_from="20250110-00000000"),
        "pc2/web": _unit("pc2", "web", reused_from="20250110-00000000"),
        "mainpc/web": _unit("mainpc", "web"),
    }
    out = io.StringIO()
    print_summary(Console(0, stream=out), record, ran={"cpu/base", "cpu/web"})
    text = out.getvalue()
    assert "pc2/web" not in text and "cpu/web" in text
    assert (
        "2 units pushed as 20250111-abcdef12 to localhost:5000/s (1 built, 1 reused); the release record now "
        "holds 5 units (3 from earlier runs; 2 built, 3 reused in all)"
    ) in text
    whole = io.StringIO()
    print_summary(Console(0, stream=whole), record, ran=set(record.units))
    assert "5 units pushed as 20250111-abcdef12 to localhost:5000/s (2 built, 3 reused)\n" in whole.getvalue()
