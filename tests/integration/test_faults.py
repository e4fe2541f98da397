"""The release side against a flaky registry: the real registry behind tests/faultproxy.py.

At a 20% fault rate, verify + promote + promote + rollback must end correct run after run (the
channel's digests equal the release record's); at 100% a run must fail within its deadline,
say which request failed how often, and move no channel.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shipyard.oci.client import RegistryClient
from shipyard.record import ReleaseRecord, load_record, save_record
from tests.conftest import make_project
from tests.faultproxy import FaultProxy
from tests.integration.conftest import shipyard, sign_as_gated

RUNS = 20
PARALLEL_RUNS = 4  # the runs wait on the proxy's stalls and the client's backoff, not on the CPU
RUN_ID = secrets.token_hex(3)  # channels of this session only: a rerun starts from no history
FAULT_ENV = {
    "SHIPYARD_REGISTRY_TIMEOUT": "0.5",  # the proxy's stalls last 0.8 s: past it
    "SHIPYARD_REGISTRY_DEADLINE": "30",
    # six attempts all faulted is one request in 15,600 at 20%: thousands of requests would fail a run
    # now and then; ten is one in ten million
    "SHIPYARD_REGISTRY_ATTEMPTS": "10",
    "SHIPYARD_LEDGER_SETTLE_S": "1",  # as a registry other machines reach: stalled ledger writes are written again
}


@pytest.fixture(scope="module")
def releases(gated, registry: RegistryClient) -> tuple[Path, ReleaseRecord, ReleaseRecord]:  # type: ignore[no-untyped-def]
    """Two gated releases of three cpu units (one service and its parents): A as built, B the same
    images re-pushed with another manifest annotation (so every digest differs), with A's verdicts."""
    root, full = gated
    a = ReleaseRecord(full.release + "-fa", full.revision, full.created, full.registry)
    a.units = {k: full.units[k] for k in ("cpu/base-python", "cpu/family-web", "cpu/affective-processing-center")}
    a.models = dict(full.models)  # the service's model, verified and signed with the gated release
    b = ReleaseRecord(full.release + "-fb", full.revision, full.created, full.registry, models=dict(full.models))
    for key, unit in a.units.items():
        path = unit.repository.split("/", 1)[1]
        manifest = registry.manifest(path, unit.digest)
        assert manifest is not None
        doc = json.loads(manifest.raw)
        doc["annotations"] = {**doc.get("annotations", {}), "io.shipyard.test": "fault-release-b"}
        digest = registry.put_manifest(path, "fault-b", json.dumps(doc).encode(), manifest.media_type)
        b.units[key] = type(unit)(**{**unit.__dict__, "digest": digest})
    save_record(root, a)
    save_record(root, b)
    # verdicts are bound to their release: A (the gated release under another name) and B (A's gates
    # passed by its new digests) each carry their own
    sign_as_gated(a, *a.units)
    sign_as_gated(b, *b.units)
    return root, a, b


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FaultProxy(rate=0.0, stall_s=0.8, lifetime_s=3000) as running:
        yield running


def channel_digests(registry: RegistryClient, record: ReleaseRecord, channel: str) -> dict[str, str | None]:
    return {key: registry.resolve(u.repository.split("/", 1)[1], channel) for key, u in record.units.items()}


def test_twenty_runs_at_a_20_percent_fault_rate_all_end_correct(releases, proxy, registry) -> None:  # type: ignore[no-untyped-def]
    """Four runs at a time, each on a channel of its own (the faults fall where the arrival order puts them)."""
    root, a, b = releases
    via = f"{proxy.host}/shipyard-it"

    def run(number: int) -> str:
        channel = f"faults-{RUN_ID}-{number}"
        shipyard("--project", str(root), "verify", "--release", a.release, "--registry", via, env=FAULT_ENV)
        for release in (a.release, b.release):
            shipyard("--project", str(root), "promote", release, "--channel", channel, "--registry", via, env=FAULT_ENV)
        assert channel_digests(registry, b, channel) == {k: u.digest for k, u in b.units.items()}
        result = shipyard("rollback", "--channel", channel, "--registry", via, env=FAULT_ENV)
        assert f"{channel} is back on {a.release}" in result.stdout, result.stdout + result.stderr
        return channel

    proxy.configure(rate=0.2, seed=RUNS)
    with ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        channels = list(pool.map(run, range(RUNS)))
    faults = Counter(proxy.faults)
    proxy.configure(rate=0.0)
    correct = sum(channel_digests(registry, a, c) == {k: u.digest for k, u in a.units.items()} for c in channels)
    print(f"\nfault rate 20%: {RUNS} runs, {correct} correct; injected {dict(faults)} of {proxy.requests} requests")
    assert correct == RUNS
    assert sum(faults.values()) > RUNS  # faults really were injected, of every kind
    assert set(faults) == {"500", "502", "503", "429", "reset", "stall"}


def test_a_dead_registry_fails_within_the_deadline_and_moves_no_channel(releases, proxy, registry) -> None:  # type: ignore[no-untyped-def]
    root, a, _ = releases
    via = f"{proxy.host}/shipyard-it"
    proxy.configure(rate=1.0, kinds=("503", "reset", "stall"))
    deadline = 6
    started = time.monotonic()
    result = shipyard(
        "--project",
        str(root),
        "promote",
        a.release,
        "--channel",
        f"faults-{RUN_ID}-dead",
        "--registry",
        via,
        env={**FAULT_ENV, "SHIPYARD_REGISTRY_DEADLINE": str(deadline)},
        check=False,
    )
    elapsed = time.monotonic() - started
    print(f"\nfault rate 100%: failed after {elapsed:.1f} s (deadline {deadline} s): {result.stderr.strip()}")
    assert result.returncode == 5, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"shipyard: error: registry {proxy.host}: GET /v2/ failed ")
    assert "time(s) in" in lines[0] and "giving up (last: " in lines[0]
    assert elapsed < deadline + 5  # the per-request deadline, plus process start and the last attempt's timeout
    proxy.configure(rate=0.0)
    assert set(channel_digests(registry, a, f"faults-{RUN_ID}-dead").values()) == {None}
    assert registry.manifest("shipyard-it/shipyard-ledger", f"faults-{RUN_ID}-dead") is None


def test_faults_mid_promotion_leave_it_visible_and_a_rerun_finishes_it(releases, proxy, registry) -> None:  # type: ignore[no-untyped-def]
    """Only the channel-tag PUTs fail, all of them: the ledger shows the promotion in progress,
    the channel is at most partly moved, and the same promote finishes it once the registry heals."""
    root, a, _ = releases
    via = f"{proxy.host}/shipyard-it"
    channel = f"faults-{RUN_ID}-mid"
    proxy.configure(rate=1.0, kinds=("503",), only=rf"^PUT /v2/shipyard-it/cpu/\S+/manifests/{channel} ")
    env = {**FAULT_ENV, "SHIPYARD_REGISTRY_DEADLINE": "3"}
    failed = shipyard(
        "--project", str(root), "promote", a.release, "--channel", channel, "--registry", via, env=env, check=False
    )
    assert failed.returncode == 5 and f"/manifests/{channel} failed" in failed.stderr, failed.stderr
    history = json.loads(shipyard("history", "--channel", channel, "--json").stdout)
    assert history["entries"][-1]["state"] == "in-progress" and history["entries"][-1]["release"] == a.release
    proxy.configure(rate=0.0)
    done = shipyard("--project", str(root), "promote", a.release, "--channel", channel, "--registry", via)
    assert "finishing the interrupted promotion" in done.stdout
    assert channel_digests(registry, a, channel) == {k: u.digest for k, u in a.units.items()}
    history = json.loads(shipyard("history", "--channel", channel, "--json").stdout)
    assert [e["state"] for e in history["entries"]] == ["complete"]


def test_buildx_runs_again_after_registry_faults_during_its_push(built, proxy, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The engine's push does not retry a manifest request answered 503; shipyard runs the build again."""
    _, record, _ = built
    root = make_project(tmp_path / "proj", profiles=("cpu",))
    namespace = f"shipyard-flaky-{RUN_ID}"
    # the engine's push of the built image (user agent docker/…): BuildKit's own requests retry by themselves
    proxy.configure(rate=1.0, kinds=("503",), only=r"^(HEAD|PUT) /v2/.*/manifests/\S+ docker/", budget=2)
    result = shipyard(
        "--project",
        str(root),
        "build",
        "--profile",
        "cpu",
        "--image",
        "base-python",
        "--no-reuse",
        "--registry",
        f"localhost:{proxy.port}/{namespace}",
        env={**FAULT_ENV, "SHIPYARD_BASE_OVERRIDE": f"python={record.units['cpu/base-python'].parent}"},
    )
    assert sum(proxy.faults.values()) == 2
    assert result.stdout.count("running buildx again") >= 1, result.stdout
    built_record = load_record(next((root / ".shipyard" / "releases").glob("*.json")))
    unit = built_record.units["cpu/base-python"]
    assert registry.resolve(f"{namespace}/cpu/base-python", built_record.release) == unit.digest
