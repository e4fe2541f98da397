"""Deploys under traffic: blue-green, stop-first and in-place on this host, in one run (`--deploy`).

    nox -s bench -- --deploy [--repeat 3]

Three targets on this host's engine run the demo's services (cpu profile), each with its strategy and
ports of its own. Each round commits a change to one service (affective-processing-center), builds,
gates and promotes it, then deploys it to each target in turn (the order alternates) while the prober
(tests/prober.py) sends 25 requests a second to every HTTP endpoint of the target and holds a WebSocket
stream open. Per deploy: the seconds from ``shipyard deploy`` to the first answer from the new release
(the edge's ``X-Shipyard-Colour`` header names the colour that answered; in place, the first answer
after the restart), the longest gap between two right answers of the changed service, the requests that
failed, and the whole deploy's seconds. Medians of the rounds are written to bench/RESULTS.md.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from tests.prober import Endpoint, Prober  # noqa: E402  (bench/ runs as a script)

REGISTRY = "localhost:5000"
CHANGED = "affective-processing-center"
STRATEGIES = {"blue-green": 17000, "stop-first": 18000, "in-place": 19000}  # strategy -> its targets' port base
PORTS = {"model-ops-coordinator": 212, "real-time-audio-pipeline": 557, "affective-processing-center": 560}
DRAIN_S = 10


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, env={**os.environ, **(env or {})}, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        output = f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        raise SystemExit(f"{' '.join(argv)} exited {result.returncode}:\n{output}")
    return result.stdout


def target_name(strategy: str) -> str:
    return f"bench-{strategy}"


def targets_toml() -> str:
    text = ""
    for strategy, base in STRATEGIES.items():
        name = target_name(strategy)
        text += f'\n[targets.{name}]\nprofile = "cpu"\nengine = "unix:///var/run/docker.sock"\n'
        text += f'strategy = "{strategy}"\n' + (f"drain_s = {DRAIN_S}\n" if strategy == "blue-green" else "")
        text += f"[targets.{name}.ports]\n" + "".join(f"{s} = {base + p}\n" for s, p in PORTS.items())
    return text


class DeployBench:
    def __init__(self, work: Path, namespace: str) -> None:
        self.work = work
        self.env = {"SHIPYARD_REGISTRY": f"{REGISTRY}/{namespace}", "SHIPYARD_BASE_OVERRIDE": "local"}
        self.channel = f"bench-{namespace[-6:]}"

    def shipyard(self, *args: str) -> str:
        return run([sys.executable, "-m", "shipyard", "--project", str(self.work), *args], env=self.env)

    def release(self, message: str) -> None:
        """A commit that changes the one service, built, gated and promoted to the bench channel."""
        source = self.work / "services" / CHANGED / "affective_processing_center" / "__init__.py"
        source.write_text(source.read_text() + f"\n# bench change {uuid.uuid4()}\n")
        run(["git", "commit", "-qam", message], cwd=self.work)
        self.shipyard("build", "-q", "--profile", "cpu")
        self.shipyard("verify", "-q")
        self.shipyard("scan", "-q", "--skip-vulnerabilities")
        self.shipyard("canary", "-q", "--profile", "cpu")
        self.shipyard("promote", "-q", "--channel", self.channel, "--profile", "cpu")

    def deploy(self, strategy: str) -> float:
        started = time.time()
        self.shipyard("deploy", "--target", target_name(strategy), "--channel", self.channel)
        return time.time() - started

    def colour(self, strategy: str) -> str:
        """The colour serving the changed service now; status exits 18 here (the channel moved: drift)."""
        argv = [sys.executable, "-m", "shipyard", "--project", str(self.work), "status", "--target"]
        result = subprocess.run([*argv, target_name(strategy), "--json"], env={**os.environ, **self.env},
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode not in (0, 18):
            raise SystemExit(f"shipyard status exited {result.returncode}: {result.stderr[-2000:]}")
        (status,) = json.loads(result.stdout)
        return next(s["colour"] for s in status["services"] if s["service"] == CHANGED)

    def endpoints(self, strategy: str) -> list[Endpoint]:
        base = STRATEGIES[strategy]
        return [
            Endpoint(f"{CHANGED} health", f"http://127.0.0.1:{base + PORTS[CHANGED]}/health"),
            Endpoint(
                f"{CHANGED} golden",
                f"http://127.0.0.1:{base + PORTS[CHANGED]}/v1/affect",
                "POST",
                {"text": "I am so happy and grateful, this is wonderful news"},
                lambda answer: isinstance(answer, dict) and answer.get("label") == "joy",
            ),  # fmt: skip
            Endpoint("model-ops health", f"http://127.0.0.1:{base + PORTS['model-ops-coordinator']}/health"),
            Endpoint(
                "real-time-audio-pipeline stream",
                f"ws://127.0.0.1:{base + PORTS['real-time-audio-pipeline']}/v1/stream",
                body={"sample_rate": 16000, "pcm_b64": "AAAAAAAAAAA="},
            ),  # fmt: skip
        ]

    def measure(self, strategy: str) -> dict[str, float]:
        before = self.colour(strategy)
        with Prober(self.endpoints(strategy), rate=25, max_s=300) as probe:
            probe.wait_answering()
            started = time.time()
            seconds = self.deploy(strategy)
            time.sleep(1.0)
        changed = probe.tallies[f"{CHANGED} health"]
        failed = sum(len(t.failures) for t in probe.tallies.values())
        if strategy == "in-place":  # no edge to name who answered: the new container answers after the gap
            times = changed.times  # answers as they arrived: the first after the longest gap is the new one's
            first_new = max(
                (b for a, b in zip(times, times[1:], strict=False) if b - a >= changed.longest_gap_s), default=started
            )
        else:
            new = [t + took for t, took, who in changed.answers if who and who != before and t + took >= started]
            first_new = min(new) if new else float("nan")
        return {
            "to new release s": round(first_new - started, 2),
            "longest gap s": round(changed.longest_gap_s, 3),
            "failed requests": failed,
            "deploy s": round(seconds, 2),
        }


def main(argv: list[str]) -> int:
    repeat = 3
    if "--repeat" in argv:
        repeat = int(argv[argv.index("--repeat") + 1])
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-deploy-")) / "repo"
    run(["git", "clone", "-q", str(REPO), str(work)])
    run(["git", "config", "user.email", "bench@localhost"], cwd=work)
    run(["git", "config", "user.name", "bench"], cwd=work)
    catalog = work / "shipyard.toml"
    catalog.write_text(catalog.read_text() + targets_toml())
    run(["git", "commit", "-qam", "bench: deploy targets"], cwd=work)
    bench = DeployBench(work, f"bench-deploy-{uuid.uuid4().hex[:6]}")
    raw: dict[str, list[dict[str, float]]] = {s: [] for s in STRATEGIES}
    try:
        bench.release("bench: release A")
        for strategy in STRATEGIES:
            bench.deploy(strategy)  # the first deploy of each target, not measured
        for i in range(repeat):
            print(f"deploy, round {i + 1}: building the next release", flush=True)
            bench.release(f"bench: release {i + 2}")
            order = list(STRATEGIES) if i % 2 == 0 else list(reversed(STRATEGIES))
            for strategy in order:
                found = bench.measure(strategy)
                raw[strategy].append(found)
                print(f"  {strategy:10} {found}", flush=True)
    finally:
        for strategy in STRATEGIES:
            remove_target(target_name(strategy))
        shutil.rmtree(work.parent, ignore_errors=True)
    write_results(raw)
    return 0


def remove_target(name: str) -> None:
    ids = run(["docker", "ps", "-aq", "--filter", f"label=io.shipyard.target={name}"]).split()
    if ids:
        run(["docker", "rm", "-f", "-v", *ids])
    volumes = run(["docker", "volume", "ls", "-q", "--filter", f"label=io.shipyard.target={name}"]).split()
    if volumes:
        subprocess.run(["docker", "volume", "rm", *volumes], capture_output=True)


def median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def write_results(raw: dict[str, list[dict[str, float]]]) -> None:
    lines = [
        "| strategy | to the new release (median s) | longest gap of the changed service (median s) "
        "| failed requests (all rounds) | whole deploy (median s) |",
        "|---|---|---|---|---|",
    ]
    for strategy, rows in raw.items():
        failed = int(sum(row["failed requests"] for row in rows))
        lines.append(
            f"| {strategy} | {median(rows, 'to new release s'):.2f} | {median(rows, 'longest gap s'):.3f} | "
            f"{failed} | {median(rows, 'deploy s'):.2f} |"
        )
    docker = run(["docker", "version", "--format", "{{.Server.Version}}"]).strip()
    from scale_report import save_section

    heading = [
        "## Deploys under traffic: blue-green, stop-first, in place",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, Docker engine {docker}; {len(next(iter(raw.values())))} rounds, "
        f"each a release that changes `{CHANGED}`, deployed to three targets on this host (the demo's three "
        "services, cpu profile) while a prober sends 25 requests/s to each HTTP endpoint (health and golden "
        "of the changed service, health of another) and holds a WebSocket stream open on a third.",
        "",
        "- **to the new release**: from `shipyard deploy` to the first answer of the changed service from its "
        "new container (the edge names the colour that answered; in place: the first answer after the restart).",
        "- **longest gap**: the longest time between two right answers of the changed service's health: an "
        "outage (in place), a hold (stop-first), or just the request interval (blue-green).",
        "- **whole deploy**: until `shipyard deploy` returns; blue-green includes the drain, which ends as soon "
        f"as the old container has no open connection (at most `drain_s = {DRAIN_S}`).",
        "",
        *lines,
    ]
    save_section(REPO / "bench" / "RESULTS.md", "deploy", heading, raw, "Raw figures")
    print("\n".join(lines))
