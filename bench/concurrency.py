"""Concurrency under load: promote, rollback, deploy and prune on one namespace through faults (`--concurrency`).

    nox -s bench -- --concurrency [--minutes 5] [--rate 0.15]

One gated release of the demo's ``real-time-audio-pipeline`` (cpu profile: built, verified, scanned and
canaried in a namespace of its own) is the seed; every new release is its images re-pushed with another
annotation (new digests, no layer moved), signed as the gates sign. Four writers, each a machine of its own
(a state directory each, the same key pair, the 1 s ledger settle of a shared registry), then run the real
CLI in a loop for N minutes, all through tests/faultproxy.py in front of the local registry (shipyard's
requests only: the engine's pulls through it pass untouched):

* **promote**: a new release, promoted to the channel;
* **rollback**: the channel rolled back;
* **deploy**: the channel deployed to a blue-green target on this engine;
* **prune**: ``prune --keep 3``.

Every minute (and at the end) the writers pause and the invariants are read from the registry directly:
the channel's ledger verifies (``shipyard history --verify``), its last entry is complete and its digests
are the channel's tags, every digest the last deployment entries name (those prune keeps) is in the
registry, the target runs its last complete deployment, and every promotion or rollback that reported
success has its entry in the ledger. The figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from scale_report import save_section  # noqa: E402  (bench/ runs as a script)
from tests.conftest import git, make_project  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402
from tests.integration.conftest import sign_as_gated  # noqa: E402

from shipyard.config.keys import development_key, machine_state_dir  # noqa: E402
from shipyard.config.registry import parse_registry  # noqa: E402
from shipyard.oci.client import RegistryClient  # noqa: E402
from shipyard.record import ReleaseRecord, load_record, save_record  # noqa: E402
from shipyard.release.channels.ledger import load_ledger  # noqa: E402
from shipyard.release.deploy.deployments import load_deployments  # noqa: E402

REGISTRY = "localhost:5000"
SERVICE = "real-time-audio-pipeline"
CHANNEL = "stable"
TARGET = "bench-conc"
KEEP = 3
SEED_PROMOTIONS = 2  # the channel's entries before the writers start
LEDGER_ENTRIES = 10  # prune's default: the last K entries of every ledger are kept
WRITERS = ("promote", "rollback", "deploy", "prune")
PAUSE_S = {"promote": 1.0, "rollback": 3.0, "deploy": 2.0, "prune": 10.0}  # between one writer's operations
FAULT_ENV = {
    "SHIPYARD_REGISTRY_TIMEOUT": "0.5",  # the proxy's stalls last 0.8 s: past it
    "SHIPYARD_REGISTRY_DEADLINE": "30",
    "SHIPYARD_REGISTRY_ATTEMPTS": "10",
    "SHIPYARD_LEDGER_SETTLE_S": "1",  # as a registry other machines reach
}
MOVED = "channel moved during the promotion; run it again"


def run(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result


def free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port // 1000 not in (16, 26) and port not in (6557, 6560, 8212, 36560):
            return port


def reason_of(code: int, err: str) -> str:
    """A refusal in a few words: the part of its message that says why, numbers and names left out."""
    line = err.strip().splitlines()[-1] if err.strip() else f"exit {code}"
    line = line.removeprefix("shipyard: error: ")
    if MOVED in line:
        line = "channel moved: " + line.split(MOVED, 1)[1].strip(" ()")
    line = re.sub(r"\b\d{8}-[0-9a-f]{8}\b", "<release>", line)
    line = re.sub(r"sha256:[0-9a-f]{6,64}", "<digest>", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return f"exit {code}: {line[:160]}"


@dataclass
class Figures:
    done: Counter[str] = field(default_factory=Counter)  # writer -> operations that succeeded
    outcomes: Counter[str] = field(default_factory=Counter)  # "deploy: deployed" / "deploy: unchanged"
    refused: Counter[str] = field(default_factory=Counter)  # "writer: reason" -> count (clean refusals)
    failed: Counter[str] = field(default_factory=Counter)  # "writer: reason" -> count (anything else)
    signatures: list[str] = field(default_factory=list)  # ledger entries that promote/rollback reported
    checks: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # writer -> seconds spent in operations


class Bench:
    def __init__(self, work: Path, namespace: str, rate: float) -> None:
        self.work = work
        self.namespace = namespace
        self.project = work / "proj"
        self.env = {"SHIPYARD_REGISTRY": f"{REGISTRY}/{namespace}", "SHIPYARD_BASE_OVERRIDE": "local"}
        self.proxy = FaultProxy(rate=0.0, seed=24, stall_s=0.8, lifetime_s=6 * 3600, only=r" python-httpx/")
        self.rate = rate
        self.client = RegistryClient(parse_registry(f"{REGISTRY}/{namespace}"))
        self.figures = Figures()
        self.lock = threading.Lock()
        self.pause = threading.Event()
        self.idle = {w: threading.Event() for w in WRITERS}
        self.number = 0

    def shipyard(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "shipyard", "--project", str(self.project), *args]
        return run(argv, {**self.env, **(env or {})}, check=check)

    # --- the seed release and the ones made from it -------------------------------------------------
    def seed(self) -> ReleaseRecord:
        make_project(self.project, services=(SERVICE,), profiles=("cpu",))
        with (self.project / "shipyard.toml").open("a") as catalog:
            catalog.write(f'\n[targets.{TARGET}]\nprofile = "cpu"\nengine = "unix:///var/run/docker.sock"\n')
            catalog.write(
                f'services = ["{SERVICE}"]\ndrain_s = 1\n[targets.{TARGET}.ports]\n"{SERVICE}" = {free_port()}\n'
            )
        git(self.project, "commit", "-qam", "the benchmark's target")
        self.shipyard("build", "-q", "--profile", "cpu")
        self.shipyard("verify", "-q")
        self.shipyard("scan", "-q", "--skip-vulnerabilities")
        self.shipyard("canary", "-q", "--profile", "cpu")
        return load_record(
            max((self.project / ".shipyard" / "releases").glob("*.json"), key=lambda p: p.stat().st_mtime)
        )

    def new_release(self, seed: ReleaseRecord) -> ReleaseRecord:
        """The seed's units re-pushed with an annotation of their own, under a release tag a day newer than the last."""
        with self.lock:
            self.number += 1
            number = self.number
        day = datetime.strptime(seed.release[:8], "%Y%m%d") + timedelta(days=number)
        name = f"{day:%Y%m%d}-{uuid.uuid4().hex[:8]}"
        units = {}
        for key, unit in seed.units.items():
            path = unit.repository.split("/", 1)[1]
            manifest = self.client.manifest(path, unit.digest)
            assert manifest is not None
            doc = json.loads(manifest.raw)
            doc["annotations"] = {**doc.get("annotations", {}), "io.shipyard.bench": name}
            digest = self.client.put_manifest(path, name, json.dumps(doc).encode(), manifest.media_type)
            units[key] = replace(unit, tag=name, digest=digest)
        record = replace(seed, release=name, units=units, created=f"{day:%Y-%m-%d}T12:00:00Z")
        save_record(self.project, record)
        sign_as_gated(record, *record.units)
        return record

    # --- the writers --------------------------------------------------------------------------------
    def machine(self, name: str) -> dict[str, str]:
        """A state directory of its own holding this machine's key pair: another machine to the ledger."""
        directory = self.work / "machines" / name
        if not directory.exists():
            shutil.copytree(machine_state_dir() / "keys", directory / "keys")
        return {"SHIPYARD_STATE_DIR": str(directory), **FAULT_ENV}

    def operation(self, writer: str, seed: ReleaseRecord) -> subprocess.CompletedProcess[str]:
        via = ("--registry", f"{self.proxy.host}/{self.namespace}")
        env = self.machine(writer)
        if writer == "promote":
            record = self.new_release(seed)
            return self.shipyard("promote", record.release, "--channel", CHANNEL, *via, "--json", env=env, check=False)
        if writer == "rollback":
            return self.shipyard("rollback", "--channel", CHANNEL, *via, "--json", env=env, check=False)
        if writer == "deploy":
            return self.shipyard(
                "deploy", "--target", TARGET, "--channel", CHANNEL, *via, "--json", env=env, check=False
            )
        return self.shipyard("prune", "--keep", str(KEEP), *via, "--json", env=env, check=False)

    def writer(self, name: str, seed: ReleaseRecord, until: float) -> None:
        while time.monotonic() < until:
            if self.pause.is_set():
                self.idle[name].set()
                while self.pause.is_set():
                    time.sleep(0.1)
                self.idle[name].clear()
                continue
            started = time.monotonic()
            result = self.operation(name, seed)
            took = time.monotonic() - started
            with self.lock:
                self.figures.seconds[name] = self.figures.seconds.get(name, 0.0) + took
                if result.returncode == 0:
                    self.figures.done[name] += 1
                    if name in ("promote", "rollback"):
                        self.figures.signatures.append(json.loads(result.stdout)["signature"])
                    if name == "deploy":
                        self.figures.outcomes[f"deploy: {json.loads(result.stdout)['outcome']}"] += 1
                    if name == "prune":
                        pruned = json.loads(result.stdout)
                        self.figures.outcomes["prune: manifests deleted"] += int(pruned["deleted"])
                        self.figures.outcomes["prune: tags taken off kept digests"] += len(pruned["untagged"])
                elif result.returncode == 13 or (name == "rollback" and "nothing to roll back" in result.stderr):
                    self.figures.refused[f"{name}: {reason_of(result.returncode, result.stderr)}"] += 1
                else:
                    self.figures.failed[f"{name}: {reason_of(result.returncode, result.stderr)}"] += 1
            time.sleep(PAUSE_S[name])
        self.idle[name].set()

    # --- the invariants -----------------------------------------------------------------------------
    def check(self, when: str) -> dict[str, Any]:
        """With every writer paused: what must hold, read from the registry directly (by a client of its own:
        one that read a manifest by digest before would not ask again whether it is still there)."""
        with RegistryClient(parse_registry(f"{REGISTRY}/{self.namespace}")) as fresh:
            return self._check(when, fresh)

    def _check(self, when: str, client: RegistryClient) -> dict[str, Any]:
        problems: list[str] = []
        verified = self.shipyard("history", "--channel", CHANNEL, "--verify", check=False)
        if verified.returncode != 0:
            problems.append(f"history --verify: {verified.stderr.strip()[-300:]}")
        ledger = load_ledger(client, self.namespace, CHANNEL)
        last = ledger.entries[-1] if ledger.entries else None
        complete = ledger.completed[-1] if ledger.completed else None
        if last is not None and last.state != "complete":
            problems.append(f"the ledger's last entry ({last.describe()}) is {last.state}")
        mismatched = []
        if complete is not None:
            for unit, digest in complete.digests.items():
                path = f"{self.namespace}/{unit}"
                if client.head_digest(path, CHANNEL) != digest:
                    mismatched.append(unit)
        if mismatched:
            problems.append(
                f"channel tags not on the last complete entry ({complete and complete.release}): {mismatched}"
            )
        signatures = {e.signature for e in ledger.entries}
        with self.lock:
            lost = [s for s in self.figures.signatures if s not in signatures]
        if lost:
            problems.append(f"{len(lost)} reported promotion(s)/rollback(s) not in the ledger")
        deployments = load_deployments(client, self.namespace, TARGET).entries
        missing = older_missing = 0
        for index, entry in enumerate(deployments):
            for ref in entry.images.values():
                path, digest = ref.split("/", 1)[1].split("@")
                if client.manifest(path, digest) is None:
                    if index >= len(deployments) - LEDGER_ENTRIES:
                        missing += 1
                    else:
                        older_missing += 1
        if missing:
            problems.append(
                f"{missing} image(s) of the last {LEDGER_ENTRIES} deployment entries gone from the registry"
            )
        good = next((e for e in reversed(deployments) if e.state == "complete"), None)
        runs = self.running()
        if good is not None and runs != {s: ref.split("@")[1] for s, ref in good.images.items()}:
            problems.append(f"the target runs {runs}, not its last complete deployment ({good.release})")
        found = {
            "when": when, "ledger_entries": len(ledger.entries), "deployment_entries": len(deployments),
            "channel_on": complete.release if complete else None, "problems": problems,
            "older_deployment_images_pruned": older_missing,
        }  # fmt: skip
        print(f"  check {when}: {problems or 'ok'}", flush=True)
        return found

    def running(self) -> dict[str, str]:
        """service -> the image its container runs (the edge aside), as the engine says."""
        client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
        try:
            return {
                c.labels["com.docker.compose.service"]: c.attrs["Image"]
                for c in client.containers.list(filters={"label": f"io.shipyard.target={TARGET}"})
                if c.labels.get("io.shipyard.role") != "edge"
            }
        finally:
            client.close()

    def paused_check(self, when: str) -> None:
        self.pause.set()
        for event in self.idle.values():
            event.wait(timeout=600)
        try:
            self.figures.checks.append(self.check(when))
        finally:
            self.pause.clear()

    def cleanup(self) -> None:
        """The target's containers and volumes (its edge included)."""
        client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
        try:
            for c in client.containers.list(all=True, filters={"label": f"io.shipyard.target={TARGET}"}):
                c.remove(force=True, v=True)
            for volume in client.volumes.list(filters={"label": f"io.shipyard.target={TARGET}"}):
                volume.remove(force=True)
        finally:
            client.close()


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", action="store_true")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=0.15, help="the proxy's fault rate (default 0.15)")
    parser.add_argument("--no-results", action="store_true", help="do not write bench/RESULTS.md (a smoke run)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-conc-"))
    namespace = f"bench-conc-{uuid.uuid4().hex[:6]}"
    development_key(machine_state_dir())
    bench = Bench(work, namespace, args.rate)
    started = time.monotonic()
    print(f"seed release in {REGISTRY}/{namespace} (build, verify, scan, canary)", flush=True)
    seed = bench.seed()
    setup_s = time.monotonic() - started
    with bench.proxy:
        # the channel starts on two releases (something to roll back to), the target on the channel
        for _ in range(SEED_PROMOTIONS):
            record = bench.new_release(seed)
            bench.shipyard("promote", record.release, "--channel", CHANNEL, "-q")
        bench.shipyard("deploy", "--target", TARGET, "--channel", CHANNEL, "-q")
        bench.proxy.configure(rate=args.rate, only=r" python-httpx/")
        requests_before = bench.proxy.requests
        print(f"{len(WRITERS)} writers for {args.minutes:g} min at a {args.rate:.0%} fault rate", flush=True)
        began = time.monotonic()
        until = began + args.minutes * 60
        threads = [threading.Thread(target=bench.writer, args=(w, seed, until), daemon=True) for w in WRITERS]
        for thread in threads:
            thread.start()
        minute = 1
        try:
            while time.monotonic() < until:
                time.sleep(1)
                if time.monotonic() >= began + minute * 60 and time.monotonic() < until - 20:
                    bench.paused_check(f"{minute} min")
                    minute += 1
            for thread in threads:
                thread.join(timeout=900)
            wall = time.monotonic() - began
            faults = dict(bench.proxy.faults)
            requests = bench.proxy.requests - requests_before
            bench.proxy.configure(rate=0.0)
            bench.figures.checks.append(bench.check("end"))
        finally:
            bench.cleanup()
    figures = bench.figures
    raw = {
        "meta": {
            "measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC", "host": platform.node(), "cores": os.cpu_count(),
            "python": platform.python_version(), "minutes": args.minutes, "rate": args.rate, "wall_s": round(wall, 1),
            "setup_s": round(setup_s, 1), "namespace": namespace,
            "docker": run(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip(),
            "command": f"nox -s bench -- --concurrency --minutes {args.minutes:g}",
        },
        "done": dict(figures.done), "outcomes": dict(figures.outcomes), "refused": dict(figures.refused),
        "failed": dict(figures.failed), "seconds": {k: round(v, 1) for k, v in figures.seconds.items()},
        "requests": requests, "faults": faults, "reported_entries": len(figures.signatures), "checks": figures.checks,
    }  # fmt: skip
    lines = section(raw)
    print("\n".join(lines))
    if not args.no_results:
        save_section(REPO / "bench" / "RESULTS.md", "concurrency", lines, raw, "Raw figures")
    shutil.rmtree(work, ignore_errors=True)
    problems = sum(len(c["problems"]) for c in figures.checks)
    return 1 if problems or figures.failed else 0


def section(raw: dict[str, Any]) -> list[str]:
    meta = raw["meta"]
    rows = ["| writer | done | clean refusals | failures | seconds in operations |", "|---|---:|---:|---:|---:|"]
    for writer in WRITERS:
        refused = sum(v for k, v in raw["refused"].items() if k.startswith(f"{writer}:"))
        failed = sum(v for k, v in raw["failed"].items() if k.startswith(f"{writer}:"))
        rows.append(
            f"| {writer} | {raw['done'].get(writer, 0)} | {refused} | {failed} | {raw['seconds'].get(writer, 0)} |"
        )
    reasons = [f"- {count} × {reason}" for reason, count in sorted(raw["refused"].items(), key=lambda kv: -kv[1])]
    failures = [f"- {count} × {reason}" for reason, count in sorted(raw["failed"].items(), key=lambda kv: -kv[1])]
    checks = [
        f"| {c['when']} | {c['ledger_entries']} | {c['deployment_entries']} | {c['channel_on']} | "
        f"{c['older_deployment_images_pruned']} | {'; '.join(c['problems']) or 'all hold'} |"
        for c in raw["checks"]
    ]
    faults = sum(raw["faults"].values())
    outcomes = ", ".join(
        f"{k.removeprefix('deploy: ')} {v}" for k, v in sorted(raw["outcomes"].items()) if k.startswith("deploy: ")
    )
    pruned = raw["outcomes"]
    return [
        "## Concurrency under load: promote, rollback, deploy and prune through a faulty registry",
        "",
        f"Measured {meta['measured']} on {meta['host']}: {meta['cores']} cores, Python {meta['python']}, Docker engine "
        f"{meta['docker']}, local registry (distribution) behind tests/faultproxy.py. Command: `{meta['command']}` "
        f"({meta['minutes']:g} minutes of writers after a {meta['setup_s']:.0f} s seed release). "
        f"Four writers on one namespace, each a machine of its own (its own state directory, so no host lock "
        f"between them; the 1 s ledger settle): promote (a new release each time), rollback, deploy (the channel, "
        f"to a blue-green target on this engine) and prune (`--keep {KEEP}`), each pausing "
        f"{', '.join(f'{v:g} s' for v in PAUSE_S.values())} between operations. The proxy faulted "
        f"{faults} of shipyard's {raw['requests']} requests ({meta['rate']:.0%}: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(raw['faults'].items()))}); the engine's pulls pass untouched.",
        "",
        f"- **done**: the command exited 0 (deploys: {outcomes}; `unchanged`: the target already ran the channel; "
        f"prunes: {pruned.get('prune: manifests deleted', 0)} manifests deleted, "
        f"{pruned.get('prune: tags taken off kept digests', 0)} tags taken off digests a kept release uses).",
        "- **clean refusals**: exit 13 with its reason (a promotion or rollback that lost the race for the ledger "
        "refuses before any tag moves; a rollback with nothing to roll back to).",
        "- **failures**: any other exit (a request that failed all its attempts, a deploy that failed).",
        f"- **checks**: writers paused, then read from the registry directly: the ledger's chain and signatures "
        f"verify; its last entry is complete and the channel's tags are its digests; every promotion and rollback "
        f"that reported success ({raw['reported_entries']} in all) has its entry; every image of the last "
        f"{LEDGER_ENTRIES} deployment entries (what prune keeps) is in the registry; the target runs its last "
        "complete deployment.",
        "",
        *rows,
        "",
        "Clean refusals by reason:",
        "",
        *(reasons or ["- none"]),
        "",
        "Failures:",
        "",
        *(failures or ["- none"]),
        "",
        *meaning(raw),
        "",
        "| check | channel ledger entries | deployment entries | channel on | older deployments' images pruned "
        "| invariants |",
        "|---|---:|---:|---|---:|---|",
        *checks,
    ]


def meaning(raw: dict[str, Any]) -> list[str]:
    """What the figures say, in a paragraph: failures, refusals, and whether anything was lost."""
    end = raw["checks"][-1]
    tries = sum(raw["done"].get(w, 0) for w in ("promote", "rollback"))
    refused = sum(v for k, v in raw["refused"].items() if k.startswith(("promote:", "rollback:")))
    failed = sum(raw["failed"].values())
    deployed = raw["outcomes"].get("deploy: deployed", 0)
    ledger_extra = end["ledger_entries"] - raw["reported_entries"] - SEED_PROMOTIONS
    deploy_extra = end["deployment_entries"] - deployed - 1
    held = all(not c["problems"] for c in raw["checks"])
    return [
        f"**What they mean.** {'No operation failed' if not failed else f'{failed} operation(s) failed'}: every "
        f"request that met a fault succeeded on a later attempt. {refused} of {tries + refused} promotions and "
        "rollbacks were refused cleanly (the ledger's race detection: another machine wrote the ledger between "
        "this one's read and its write, or within the settle time after it; exit 13 before any tag moved, an "
        f"operator's `run it again`). Nothing lost: the {raw['reported_entries']} that reported success are all in "
        f"the channel's ledger, which holds {end['ledger_entries']} entries (those, the {SEED_PROMOTIONS} the run "
        f"starts from{', and nothing else' if ledger_extra == 0 else f', and {ledger_extra} more'}); the "
        f"target's ledger holds {end['deployment_entries']} entries for {deployed} deploys reported `deployed` and "
        f"the one the run starts from{'' if deploy_extra == 0 else f' ({deploy_extra} more)'}. The invariants "
        f"{'held at every check' if held else 'did NOT hold at every check (see the table)'}; the images prune "
        f"removed from deployment entries older than the last {LEDGER_ENTRIES} are its rule (`--ledger-entries`), "
        "not a loss.",
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
