"""shipyard vs `docker buildx bake` (and promotion vs `skopeo copy`) on this repo's catalog, in one run.

Every case runs several times, the tools alternating, against the local registry; medians and the
ratio shipyard / anchor are printed and written to bench/RESULTS.md with the raw numbers.

    nox -s bench                   # or: python bench/run.py --repeat 3
    nox -s bench -- --scale 18,50,100   # the scaling benchmark instead (bench/scale.py)
    nox -s bench -- --deploy            # deploys under traffic: blue-green, stop-first, in place (bench/deploy.py)
    nox -s bench -- --breakdown [--scale 18]       # where a cold and a one-changed build spend their time
    nox -s bench -- --concurrency [--minutes 5]   # 4 writers on one namespace through faults (bench/concurrency.py)

Each benchmark writes its own section of bench/RESULTS.md and leaves the other's as it is.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REGISTRY = "localhost:5000"


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, env={**os.environ, **(env or {})}, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result.stdout


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Bench:
    def __init__(self, work: Path, base_ref: str) -> None:
        self.work = work
        self.base_ref = base_ref

    def env(self, namespace: str) -> dict[str, str]:
        return {"SHIPYARD_REGISTRY": f"{REGISTRY}/{namespace}", "SHIPYARD_BASE_OVERRIDE": f"python={self.base_ref}"}

    def shipyard(self, namespace: str, *extra: str) -> None:
        run(
            [sys.executable, "-m", "shipyard", "--project", str(self.work), "build", "-q", *extra],
            env=self.env(namespace),
        )

    def bake_file(self, namespace: str) -> Path:
        path = self.work / ".shipyard" / f"bake-{namespace}.json"
        run(
            [sys.executable, "-m", "shipyard", "--project", str(self.work), "bake-file", "--output", str(path)],
            env=self.env(namespace),
        )
        return path

    def bake(self, namespace: str) -> float:
        path = self.bake_file(namespace)  # writing the file is not timed: bake users keep one
        return timed(lambda: run(["docker", "buildx", "bake", "-f", str(path)]))

    def commit(self, message: str, change: bool = False) -> None:
        if change:
            source = (
                self.work / "services" / "affective-processing-center" / "affective_processing_center" / "__init__.py"
            )
            source.write_text(source.read_text() + f"\n# bench change {uuid.uuid4()}\n")
        run(
            ["git", "commit", "-qam" if change else "-q", *([] if change else ["--allow-empty", "-m"]), message],
            cwd=self.work,
        )


def prune() -> None:
    run(["docker", "buildx", "prune", "-af"])


def main() -> int:
    if "--breakdown" in sys.argv[1:]:
        import breakdown

        return breakdown.main([a for a in sys.argv[1:] if a != "--breakdown"])
    if any(arg == "--scale" or arg.startswith("--scale=") for arg in sys.argv[1:]):
        import scale  # bench/ is on sys.path: this file runs as a script

        return scale.main(sys.argv[1:])
    if "--deploy" in sys.argv[1:]:
        import deploy

        return deploy.main(sys.argv[1:])
    if "--concurrency" in sys.argv[1:]:
        import concurrency

        return concurrency.main(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-")) / "repo"
    run(["git", "clone", "-q", str(REPO), str(work)])
    run(["git", "config", "user.email", "bench@localhost"], cwd=work)
    run(["git", "config", "user.name", "bench"], cwd=work)
    tag = uuid.uuid4().hex[:6]
    # one local base for both tools, pushed once and referenced by digest
    base_ns = f"bench-{tag}-base"
    base_line = run([sys.executable, "-m", "shipyard", "base"], env={"SHIPYARD_REGISTRY": f"{REGISTRY}/{base_ns}"})
    python_base = [line.strip() for line in base_line.splitlines() if "/bases/debian-bookworm-python@" in line]
    bench = Bench(work, python_base[-1])  # the edge profile's HAProxy base is printed too
    raw: dict[str, dict[str, list[float]]] = {}

    def record(case: str, tool: str, seconds: float) -> None:
        raw.setdefault(case, {}).setdefault(tool, []).append(round(seconds, 2))
        print(f"  {case:14} {tool:22} {seconds:7.2f}s", flush=True)

    sy_ns, bake_ns = f"bench-{tag}-shipyard", f"bench-{tag}-bake"
    for i in range(args.repeat):
        print(f"cold, round {i + 1}", flush=True)
        for tool in ("shipyard", "bake") if i % 2 == 0 else ("bake", "shipyard"):
            prune()  # empty local build cache; a new namespace has an empty registry cache
            ns = f"bench-{tag}-cold{i}-{tool}"
            record("cold", tool, timed(lambda ns=ns: bench.shipyard(ns)) if tool == "shipyard" else bench.bake(ns))
    bench.shipyard(sy_ns)  # warm both namespaces once
    bench.bake(bake_ns)
    cases = (("no-op", False, False), ("one-service", True, False), ("pruned", False, True))
    for case, change, pruned in cases:
        for i in range(args.repeat):
            print(f"{case}, round {i + 1}", flush=True)
            bench.commit(f"bench {case} {i}", change=change)
            for tool in ("shipyard", "bake") if i % 2 == 0 else ("bake", "shipyard"):
                if pruned:
                    prune()
                record(case, tool, timed(lambda: bench.shipyard(sy_ns)) if tool == "shipyard" else bench.bake(bake_ns))
            if pruned:  # the registry-cache path itself, without input-digest reuse
                prune()
                record(case, "shipyard --no-reuse", timed(lambda: bench.shipyard(sy_ns, "--no-reuse")))
    # promotion of every unit of the newest shipyard release vs skopeo copy of the same tags
    record_path = max((work / ".shipyard" / "releases").glob("*.json"), key=lambda p: p.stat().st_mtime)
    release = json.loads(record_path.read_text())
    for i in range(args.repeat):
        print(f"promote, round {i + 1}", flush=True)
        channel = f"bench{i}"
        for tool in ("shipyard", "skopeo") if i % 2 == 0 else ("skopeo", "shipyard"):
            if tool == "shipyard":
                argv = [
                    sys.executable,
                    "-m",
                    "shipyard",
                    "--project",
                    str(work),
                    "promote",
                    release["release"],
                    "--channel",
                    f"{channel}-sy",
                    "--force",
                    "--reason",
                    "benchmark",
                ]
                record("promote", tool, timed(lambda argv=argv: run(argv, env=bench.env(sy_ns))))
            else:

                def copy_all(channel: str = channel) -> None:
                    for unit in release["units"].values():
                        src = f"docker://{unit['repository']}:{unit['tag']}"
                        run(
                            [
                                "skopeo",
                                "copy",
                                "--quiet",
                                "--src-tls-verify=false",
                                "--dest-tls-verify=false",
                                "--preserve-digests",
                                src,
                                f"docker://{unit['repository']}:{channel}-skopeo",
                            ]
                        )

                record("promote", tool, timed(copy_all))
    write_results(raw, len(release["units"]))
    shutil.rmtree(work.parent, ignore_errors=True)
    return 0


def write_results(raw: dict[str, dict[str, list[float]]], units: int) -> None:
    anchors = {"promote": "skopeo"}
    targets = {"cold": 1.05, "no-op": 0.10, "one-service": 1.0, "pruned": None, "promote": 0.2}
    lines = [
        "| case | shipyard (median s) | anchor | anchor (median s) | ratio | target |",
        "|---|---|---|---|---|---|",
    ]
    for case, tools in raw.items():
        anchor = anchors.get(case, "bake")
        sy, an = statistics.median(tools["shipyard"]), statistics.median(tools[anchor])
        target = targets.get(case)
        lines.append(
            f"| {case} | {sy:.2f} | {anchor} | {an:.2f} | **{sy / an:.2f}×** | "
            f"{'≤ ' + format(target, '.2f') + '×' if target else '—'} |"
        )
        if "shipyard --no-reuse" in tools:
            nr = statistics.median(tools["shipyard --no-reuse"])
            lines.append(f"| {case}, shipyard --no-reuse | {nr:.2f} | {anchor} | {an:.2f} | **{nr / an:.2f}×** | — |")
    docker = run(["docker", "version", "--format", "{{.Server.Version}}"]).strip()
    buildx = run(["docker", "buildx", "version"]).strip()
    from scale_report import save_section

    heading = [
        "## This repo's catalog: shipyard vs docker buildx bake",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
        f"Python {platform.python_version()}, "
        f"Docker engine {docker} (containerd image store), {buildx}. Catalog: this repo, {units} build units "
        "(3 profiles × 6 images), local registry on 127.0.0.1:5000. "
        "Both tools use the same local base (by digest), "
        "the same registry cache settings (type=registry, mode=max) and the default docker driver; runs alternate "
        "between the tools; medians of the rounds below.",
        "",
        "- **cold**: `docker buildx prune -af` and a new registry namespace (empty registry cache) before each run.",
        "- **no-op**: a new commit that touches no image input.",
        "- **one-service**: a new commit that changes one service's source (rebuilds it in 3 profiles).",
        "- **pruned**: a new commit after `docker buildx prune -af`, registry cache present; the extra row shows "
        "shipyard with `--no-reuse`, i.e. the registry-cache path itself.",
        "- **promote**: every unit of a release to a new channel: `shipyard promote` (manifest PUT by digest) vs "
        "`skopeo copy --preserve-digests` of the same tags, one after another.",
        "",
        *lines,
    ]
    save_section(REPO / "bench" / "RESULTS.md", "repo", heading, raw, "Raw seconds")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
