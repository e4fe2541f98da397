"""The release side against a flaky registry: the real registry behind tests/faultproxy.py.

At a 20% fault rate, verify + promote + promote + rollback must end correct run after run (the
channel's digests equal the release record's), deploys to a target on this engine must each end
running their release with a complete entry in the target's ledger, and a prune must leave the
registry as a fault-free prune of the same content does; at 100% a run must fail within its deadline,
say which request failed how often, and move no channel.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from shipyard.config.keys import development_key, machine_state_dir
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import push_signature
from shipyard.oci.reference import RegistryNamespace
from shipyard.record import ReleaseRecord, load_record, save_record
from shipyard.release.channels.ledger import Entry, Ledger, save_ledger
from shipyard.release.deploy.deployments import load_deployments
from tests.conftest import make_project
from tests.faultproxy import FaultProxy
from tests.integration.conftest import copy_project, shipyard, sign_as_gated
from tests.integration.test_prune import push_image
from tests.integration.test_rollout import remove_target, running

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
    sign_as_gated(a)  # A's own verdicts (a verdict is bound to its release): its digests are the gated release's
    sign_as_gated(b, *b.units)  # B passed A's gates: its new digests carry the signed verdicts too
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
        shipyard("--project", str(root), "verify", a.release, "--registry", via, env=FAULT_ENV)
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


SHIPYARD_ONLY = r" python-httpx/"  # shipyard's own requests; the engine's pulls through the proxy pass untouched
RESERVED_PORTS = {6557, 6560, 8212, 36560}  # and 16xxx, 26xxx: other tests' targets


def free_port() -> int:
    """A free host port outside the ones other tests' targets publish on."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in RESERVED_PORTS and port // 1000 not in (16, 26):
            return port


def test_deploys_under_faults_converge(releases, proxy, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A, B, A to a blue-green target on this engine, the target's ledger and the trust reads through the
    proxy at 20%: each deploy ends with its release running and its entry complete, none lost. The images
    come from the records (localhost:5000, straight to the engine)."""
    root, a, b = releases
    project = copy_project(root, tmp_path / "proj")
    target, service = f"faults-{RUN_ID}", "affective-processing-center"
    with (project / "shipyard.toml").open("a") as catalog:
        catalog.write(f'\n[targets.{target}]\nprofile = "cpu"\nengine = "unix:///var/run/docker.sock"\n')
        catalog.write(f'services = ["{service}"]\ndrain_s = 1\n[targets.{target}.ports]\n"{service}" = {free_port()}\n')
    via = f"{proxy.host}/shipyard-it"
    order = (a, b, a)
    proxy.configure(rate=0.2, seed=RUNS + 1, only=SHIPYARD_ONLY)
    try:
        for number, record in enumerate(order, 1):
            result = shipyard("--project", str(project), "deploy", "--target", target, record.release,
                              "--registry", via, env=FAULT_ENV)  # fmt: skip
            assert f"{record.release} deployed" in result.stdout, result.stdout + result.stderr
            faults = sum(proxy.faults.values())
            proxy.configure(rate=0.0)
            digest = record.units[f"cpu/{service}"].digest
            assert running("unix:///var/run/docker.sock", target) == {service: [digest]}, number
            entries = load_deployments(registry, "shipyard-it", target).entries
            assert [e.state for e in entries] == ["complete"] * number, [(e.state, e.reason) for e in entries]
            assert entries[-1].release == record.release and entries[-1].images[service].endswith(f"@{digest}")
            proxy.configure(rate=0.2, only=SHIPYARD_ONLY)
        print(f"\ndeploys at 20%: {len(order)} converged; {faults} faults injected")
        assert faults >= len(order)
    finally:
        proxy.configure(rate=0.0, only="")
        remove_target("unix:///var/run/docker.sock", target)
        # what the engine pulled under the proxy's name (the fill's and the edge's images)
        names = subprocess.run(["docker", "images", "--format", "{{.Repository}}@{{.Digest}}",
                                "--filter", f"reference={proxy.host}/*/*/*"],
                               capture_output=True, text=True).stdout.split()  # fmt: skip
        for name in names:
            subprocess.run(["docker", "image", "rm", name], capture_output=True)


PRUNE_NS = f"shipyard-it-faults-{RUN_ID}"


def prune_twin(client: RegistryClient, namespace: str) -> None:
    """Five releases of a family and a service (the family reused by two), each signed; the channel
    ``stable`` on the second, in its ledger: the same manifests byte for byte in every twin."""
    signer = development_key(machine_state_dir())
    family = ""
    for day in range(1, 6):
        name = f"202501{day:02d}-{hashlib.sha1(f'faults {day}'.encode()).hexdigest()[:8]}"
        digests = {}
        for unit in ("cpu/family-web", "cpu/hello"):
            repo = f"{namespace}/{unit}"
            if unit == "cpu/family-web" and day == 4:  # reused: release 3's digest gets release 4's tag too
                manifest = client.manifest(repo, family)
                assert manifest is not None
                digest = client.put_manifest(repo, name, manifest.raw, manifest.media_type)
            else:
                digest = push_image(client, repo, f"{unit} {day}\n".encode() * 512, [name])
            if unit == "cpu/family-web":
                family = digest
            if day == 2:
                manifest = client.manifest(repo, digest)
                assert manifest is not None
                client.put_manifest(repo, "stable", manifest.raw, manifest.media_type)
            push_signature(client, repo, digest, f"localhost:5000/{repo}", signer)
            digests[unit] = digest
        if day == 2:
            entry = Entry("promote", name, digests, {}, state="complete")
            save_ledger(client, namespace, Ledger("stable", [entry]))


Tags = dict[str, dict[str, tuple[str, list[tuple[str, int]]]]]


def registry_tags(namespace: str) -> Tags:
    """Repository (without the namespace) -> tag -> (digest, [(each manifest an index lists, the status of a
    HEAD of it)]), for every tag of the namespace, as the registry itself answers."""
    api = "http://127.0.0.1:5000/v2"
    accept = {"Accept": "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"}
    with RegistryClient(RegistryNamespace("localhost:5000", namespace)) as client:
        repos = [r for r in client.catalog() if r.startswith(namespace + "/")]
    found: Tags = {}
    for repo in repos:
        tags = httpx.get(f"{api}/{repo}/tags/list", timeout=30).json().get("tags") or []
        for tag in sorted(tags):
            response = httpx.get(f"{api}/{repo}/manifests/{tag}", headers=accept, timeout=30)
            if response.status_code == 404:
                continue
            listed = [c["digest"] for c in response.json().get("manifests", [])]
            children = [
                (child, httpx.head(f"{api}/{repo}/manifests/{child}", headers=accept, timeout=30).status_code)
                for child in listed
            ]
            found.setdefault(repo.removeprefix(namespace + "/"), {})[tag] = (
                response.headers["Docker-Content-Digest"], children,
            )  # fmt: skip
    return found


def digest_names(before: Tags) -> dict[str, str]:
    """Each digest named by the first tag on it (an index's manifests by its name and their place): the
    twins' images name their repository in their config, so the same release has other digests in each."""
    names: dict[str, str] = {}
    for repo, tags in sorted(before.items()):
        for tag, (digest, children) in sorted(tags.items()):
            names.setdefault(digest, f"{repo}:{tag}")
            for index, (child, _) in enumerate(children):
                names.setdefault(child, f"{names[digest]}#{index}")
    return names


def rendered(tags: Tags, names: dict[str, str]) -> dict[str, dict[str, object]]:
    """The tags, by name: what a twin looks like whatever its digests. A digest's signature tag by the
    digest's name; a signature (signed afresh in each twin) and a ledger (written at its own time) by
    their tag alone."""

    def tag_name(tag: str) -> str:
        match = re.match(r"^sha256-([0-9a-f]{64})(.*)$", tag)
        return f"{names.get('sha256:' + match[1], '?')}{match[2]}" if match else tag

    def what(repo: str, tag: str, digest: str, children: list[tuple[str, int]]) -> object:
        if tag.endswith((".sig", ".att")) or "ledger" in repo:
            return "signed"
        return names.get(digest, "?"), [(names.get(child, "?"), status) for child, status in children]

    return {
        repo: {tag_name(tag): what(repo, tag, *found) for tag, found in repo_tags.items()}
        for repo, repo_tags in tags.items()
    }


def test_a_prune_under_faults_ends_as_a_fault_free_one(proxy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Twin namespaces of the same releases: one pruned straight, the other through the proxy at 20%."""
    clean, faulty = f"{PRUNE_NS}/clean", f"{PRUNE_NS}/faulty"
    client = RegistryClient(RegistryNamespace("localhost:5000", PRUNE_NS))
    try:
        for namespace in (clean, faulty):
            prune_twin(client, namespace)
        names = {ns: digest_names(registry_tags(ns)) for ns in (clean, faulty)}
        before = rendered(registry_tags(clean), names[clean])
        assert before == rendered(registry_tags(faulty), names[faulty])
        (tmp_path / "empty").mkdir()
        prune = ("--project", str(tmp_path / "empty"), "prune", "--keep", "2")
        shipyard(*prune, "--registry", f"localhost:5000/{clean}")
        proxy.configure(rate=0.2, seed=RUNS + 2)
        result = shipyard(*prune, "--registry", f"{proxy.host}/{faulty}", env=FAULT_ENV)
        faults = sum(proxy.faults.values())
        proxy.configure(rate=0.0)
        assert "3 release(s) kept, 2 removed" in result.stdout, result.stdout + result.stderr
        after = rendered(registry_tags(clean), names[clean])
        assert rendered(registry_tags(faulty), names[faulty]) == after
        assert after != before
        kept = {tag for tag in after["cpu/hello"] if tag.startswith("2025")}
        assert len(kept) == 3, after["cpu/hello"]  # the newest two and the channel's
        assert "stable" in after["cpu/hello"] and "stable" in after["cpu/family-web"]
        again = json.loads(shipyard(*prune, "--registry", f"localhost:5000/{faulty}", "--json").stdout)
        assert again["deletions"] == [] and again["untagged"] == []
        print(f"\nprune at 20%: {faults} faults injected, the same registry as a fault-free prune")
        assert faults > 0
    finally:
        for repo in (f"{n}/{unit}" for n in (clean, faulty) for unit in ("cpu/family-web", "cpu/hello",
                                                                          "shipyard-ledger")):  # fmt: skip
            for tag in httpx.get(f"http://127.0.0.1:5000/v2/{repo}/tags/list", timeout=30).json().get("tags") or []:
                if digest := client.head_digest(repo, tag):
                    client.delete_manifest(repo, digest)
        client.close()


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


def test_faults_after_the_push_leave_the_pushed_image_standing(built, proxy, registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The engine's second push of the image BuildKit just pushed does not retry a manifest request answered
    503, and buildx fails; the image is in the registry by then, so shipyard tells it and carries on (its
    children already build on it) rather than building again."""
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
    assert sum(proxy.faults.values()) >= 1
    assert "running buildx again" not in result.stdout, result.stdout
    assert "then buildx failed after the push" in result.stdout + result.stderr, result.stdout
    built_record = load_record(next((root / ".shipyard" / "releases").glob("*.json")))
    unit = built_record.units["cpu/base-python"]
    assert registry.resolve(f"{namespace}/cpu/base-python", built_record.release) == unit.digest
