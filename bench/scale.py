"""The scaling benchmark: shipyard vs its anchors on generated catalogs of N units, in one run.

For each N (bench/catalog_gen.py: 18 = 3×6, 50 = 5×10, 100 = 5×20), the tools alternating:

- cold: ``docker buildx prune -af`` and a fresh registry namespace per tool and round; shipyard
  ``build`` vs ``docker buildx bake -f <shipyard bake-file export>`` (pushes, registry cache);
  once more as ``build --no-attest`` (no provenance, no SBOM), against the same bake runs;
- no-op: a new commit that touches no image input;
- one-changed: a new commit changing the mid-level family ``mid-a`` (it and its subtree rebuild);
- verify: ``shipyard verify`` of the newest release (a cold, then a warm listing cache) vs a ``skopeo
  inspect`` loop over its tags;
- promote: ``shipyard promote --force --reason`` of that release vs a ``skopeo copy
  --preserve-digests`` loop over the same tags.

Then the floors (a Python start, shipyard's imports, the registry round trips) and the results:
bench/RESULTS.md (its scale section), bench/scaling.svg, bench/scale-raw.json.

    nox -s bench -- --scale 18,50,100            # the measurement (prunes the whole build cache)
    python bench/run.py --scale 6 --no-prune     # a small run while developing (leaves the cache be)
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shlex
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
from typing import Any

import catalog_gen
import scale_report

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
REGISTRY = "localhost:5000"
SKOPEO_TLS = ("--src-tls-verify=false", "--dest-tls-verify=false")


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, env={**os.environ, **(env or {})}, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(
            f"{shlex.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def local_base(registry: str) -> str:
    """The local base by digest; ``shipyard base`` builds it once per namespace (its tag is the recipe's hash)."""
    out = run([sys.executable, "-m", "shipyard", "--project", str(REPO), "base", "--registry", registry])
    found = [line for line in out.splitlines() if "/bases/debian-bookworm-python@" in line]
    if not found:
        raise SystemExit(f"shipyard base printed no Python base:\n{out}")
    return found[-1].strip()  # the repo's profiles also have an edge base (HAProxy), printed after it


class Scale:
    """One N: a generated project, and the commands of both tools against it."""

    def __init__(self, catalog: catalog_gen.GeneratedCatalog, base_ref: str, prefix: str, prune: bool) -> None:
        self.catalog = catalog
        self.base_ref = base_ref
        self.prefix = prefix
        self.prune_cache = prune
        self.sy_ns = self.bake_ns = ""
        self.per_profile = False  # bake one profile's targets per invocation (once one bake of all failed)
        self.bake_failure = ""  # why one bake of every target failed, when it did

    @property
    def root(self) -> Path:
        return self.catalog.root

    def env(self, namespace: str) -> dict[str, str]:
        return {"SHIPYARD_REGISTRY": f"{REGISTRY}/{namespace}", "SHIPYARD_BASE_OVERRIDE": f"python={self.base_ref}"}

    def shipyard(self, namespace: str, *argv: str, cache: Path | None = None) -> str:
        """``cache``: shipyard's cache folder for this run (SHIPYARD_CACHE_DIR), else the machine's."""
        env = self.env(namespace) | ({"SHIPYARD_CACHE_DIR": str(cache)} if cache else {})
        return run([sys.executable, "-m", "shipyard", "--project", str(self.root), *argv], env=env)

    def build(self, namespace: str) -> float:
        return timed(lambda: self.shipyard(namespace, "build", "-q"))

    def bake(self, namespace: str) -> float:
        path = self.root / ".shipyard" / f"bake-{namespace.rsplit('/', 1)[-1]}.json"
        self.shipyard(namespace, "bake-file", "--output", str(path))  # not timed: bake users keep one
        if not self.per_profile:
            return timed(lambda: run(["docker", "buildx", "bake", "-f", str(path)]))
        targets = list(json.loads(path.read_text())["target"])
        groups = [[t for t in targets if t.startswith(f"{profile}-")] for profile in self.catalog.profiles]

        def one_after_another() -> None:
            for group in groups:  # a target's `target:` parent is in its own profile's group
                run(["docker", "buildx", "bake", "-f", str(path), *group])

        return timed(one_after_another)

    def cold_bake(self, namespace: str) -> float:
        """bake of every target in one invocation; when that fails (at N = 100 here BuildKit's cache
        import of every target at once runs out of time), the failure is kept and bake runs again, cold,
        one profile per invocation: the anchor then is what a bake user falls back to."""
        if self.per_profile:
            return self.bake(namespace + "-pp")
        try:
            return self.bake(namespace)
        except SystemExit as failed:
            self.bake_failure = first_error(str(failed))
            print(f"  one bake of every target failed ({self.bake_failure}); bake per profile instead", flush=True)
        self.per_profile = True
        self.prune()
        return self.bake(namespace + "-pp")

    def prune(self) -> None:
        if self.prune_cache:
            run(["docker", "buildx", "prune", "-af"])

    def newest_record(self) -> dict[str, Any]:
        records = (self.root / ".shipyard" / "releases").glob("*.json")
        return json.loads(max(records, key=lambda p: p.stat().st_mtime).read_text())  # type: ignore[no-any-return]

    def tags(self, record: dict[str, Any]) -> list[tuple[str, str]]:
        return [(unit["repository"], unit["tag"]) for unit in record["units"].values()]


def first_error(text: str) -> str:
    """The line of a failed command's output that says what failed (BuildKit's ``ERROR: …``)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("ERROR")), lines[0] if lines else "?")[:200]


def order(i: int, anchor: str) -> tuple[str, str]:
    return ("shipyard", anchor) if i % 2 == 0 else (anchor, "shipyard")


def measure_size(scale: Scale, repeat: int, log: Callable[[str, str, float], None]) -> dict[str, Any]:
    runs: dict[str, dict[str, list[float]]] = {}
    rebuilt: list[int] = []

    def record(case: str, tool: str, seconds: float) -> None:
        runs.setdefault(case, {}).setdefault(tool, []).append(round(seconds, 3))
        log(case, tool, seconds)

    for i in range(repeat):
        for tool in order(i, "bake"):
            scale.prune()  # empty local build cache; a new namespace has an empty registry cache
            ns = f"{scale.prefix}-cold{i}-{'sy' if tool == 'shipyard' else 'bake'}"
            record("cold", tool, scale.build(ns) if tool == "shipyard" else scale.cold_bake(ns))
            if tool == "shipyard":
                scale.sy_ns = ns
            else:
                scale.bake_ns = ns + ("-pp" if scale.per_profile else "")
    for i in range(repeat):  # what the attestations (provenance, SBOM) cost a cold build; the units are signed
        scale.prune()
        ns = f"{scale.prefix}-cold{i}-noattest"
        record("cold --no-attest", "shipyard", timed(lambda ns=ns: scale.shipyard(ns, "build", "-q", "--no-attest")))
    runs["cold --no-attest"]["bake"] = list(runs["cold"]["bake"])  # the same anchor: bake's cold runs
    # the later cases start from the last cold round's namespaces, both at HEAD
    for i in range(repeat):
        catalog_gen.commit_no_op(scale.catalog, f"no-op {i} {uuid.uuid4().hex[:8]}")
        for tool in order(i, "bake"):
            record("no-op", tool, scale.build(scale.sy_ns) if tool == "shipyard" else scale.bake(scale.bake_ns))
    for i in range(repeat):
        catalog_gen.change_image(scale.catalog, catalog_gen.CHANGED_IMAGE, f"change {i} {uuid.uuid4().hex[:8]}")
        for tool in order(i, "bake"):
            if tool == "shipyard":
                record("one-changed", tool, scale.build(scale.sy_ns))
                rebuilt.append(sum(1 for u in scale.newest_record()["units"].values() if not u.get("reused_from")))
            else:
                record("one-changed", tool, scale.bake(scale.bake_ns))
    release = scale.newest_record()
    tags = scale.tags(release)

    def inspect_all() -> None:
        for repository, tag in tags:
            run(["skopeo", "inspect", "--tls-verify=false", f"docker://{repository}:{tag}"])

    for i in range(repeat):  # verify with a cold listing cache (a new cache folder), then warm (the same one)
        for tool in order(i, "skopeo inspect"):
            if tool == "shipyard":
                cache = Path(tempfile.mkdtemp(prefix="shipyard-bench-cache-"))
                try:
                    for case in ("verify (cold listing cache)", "verify (warm listing cache)"):
                        argv = ("verify", release["release"])
                        record(case, tool, timed(functools.partial(scale.shipyard, scale.sy_ns, *argv, cache=cache)))
                finally:
                    shutil.rmtree(cache, ignore_errors=True)
            else:
                seconds = timed(inspect_all)
                record("verify (cold listing cache)", tool, seconds)
                record("verify (warm listing cache)", tool, seconds)
    for i in range(repeat):
        channel = f"bench{i}"

        def copy_all(channel: str = channel) -> None:
            for repository, tag in tags:
                run(
                    [
                        "skopeo", "copy", "--quiet", *SKOPEO_TLS, "--preserve-digests",
                        f"docker://{repository}:{tag}", f"docker://{repository}:{channel}-skopeo",
                    ]
                )  # fmt: skip

        for tool in order(i, "skopeo copy"):
            if tool == "shipyard":
                promote = ["promote", release["release"], "--channel", f"{channel}-sy", "--force", "--reason", "bench"]
                record("promote", tool, timed(functools.partial(scale.shipyard, scale.sy_ns, *promote)))
            else:
                record("promote", tool, timed(copy_all))
    cat = scale.catalog
    return {
        "profiles": len(cat.profiles),
        "images": len(cat.parents),
        "depth": cat.max_depth,
        "changed_image": catalog_gen.CHANGED_IMAGE,
        "expected_rebuilt": len(cat.profiles) * len(cat.subtree(catalog_gen.CHANGED_IMAGE)),
        "rebuilt": rebuilt,
        "release": release["release"],
        "namespaces": {"shipyard": scale.sy_ns, "bake": scale.bake_ns},
        **({"bake_per_profile": scale.bake_failure} if scale.per_profile else {}),
        "runs": runs,
        "floors": registry_floors(release),
    }


MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def registry_floors(release: dict[str, Any]) -> dict[str, float]:
    """What the registry costs at least, sequentially on one connection: per unit a manifest GET (its
    round trip), and a GET + PUT under a new tag (the work of a retag, i.e. of a no-op unit or a promotion)."""
    import httpx  # shipyard's own dependency; imported here so the report module stays dependency-free

    units = list(release["units"].values())
    with httpx.Client(base_url=f"http://{REGISTRY}", headers={"Accept": MANIFEST_TYPES}, timeout=30) as client:

        def path(unit: dict[str, Any], ref: str) -> str:
            return f"/v2/{unit['repository'].partition('/')[2]}/manifests/{ref}"

        client.get(path(units[0], units[0]["digest"]))  # the connection, once
        started = time.perf_counter()
        for unit in units:
            client.get(path(unit, unit["digest"])).raise_for_status()
        get_rtt = (time.perf_counter() - started) / len(units)
        started = time.perf_counter()
        for unit in units:
            got = client.get(path(unit, unit["tag"]))
            got.raise_for_status()
            client.put(
                path(unit, "bench-floor"), content=got.content, headers={"Content-Type": got.headers["content-type"]}
            ).raise_for_status()
        retag = time.perf_counter() - started
    return {"get_rtt_s": round(get_rtt, 5), "retag_loop_s": round(retag, 4)}


def process_floors() -> dict[str, float]:
    def median_of(argv: list[str], times: int = 5) -> float:
        return statistics.median(timed(lambda: run(argv)) for _ in range(times))

    start = median_of([sys.executable, "-c", "pass"])
    with_imports = median_of([sys.executable, "-m", "shipyard", "--version"])
    return {"python_start_s": round(start, 3), "shipyard_import_s": round(max(0.0, with_imports - start), 3)}


def version(argv: list[str]) -> str:
    try:
        return run(argv).strip()
    except (SystemExit, OSError):
        return "?"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [catalog_gen.parse_shape(item.strip()) for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--scale", required=True, metavar="N[,N…]", help="unit counts (18, 50, 100 …) or PxI shapes, comma-separated"
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds per case (medians; default %(default)s)")
    parser.add_argument(
        "--no-prune",
        dest="prune",
        action="store_false",
        help="skip `docker buildx prune -af` before cold runs (development: leaves a shared engine's cache be)",
    )
    parser.add_argument(
        "--namespace-prefix", default="", help="registry namespaces start so (default bench-scale-<id>)"
    )
    parser.add_argument(
        "--base-registry",
        default=f"{REGISTRY}/bench-base",
        help="where the local base lives (built there once; default %(default)s)",
    )
    parser.add_argument("--work", type=int, default=catalog_gen.DEFAULT_WORK, help="hash rounds per RUN step")
    parser.add_argument("--keep", action="store_true", help="keep the generated projects (their paths are printed)")
    parser.add_argument("--no-write", action="store_true", help="print the table; leave bench/ as it is")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat: at least 1")
    shapes = parse_sizes(args.scale)
    run_id = uuid.uuid4().hex[:6]
    prefix = args.namespace_prefix or f"bench-scale-{run_id}"
    print(f"local base in {args.base_registry} …", flush=True)
    base_ref = local_base(args.base_registry)
    work = Path(tempfile.mkdtemp(prefix="shipyard-scale-"))
    raw: dict[str, Any] = {
        "meta": {
            "measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            "host": platform.node(),
            "cores": os.cpu_count(),
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "python": platform.python_version(),
            "docker": version(["docker", "version", "--format", "{{.Server.Version}}"]),
            "buildx": version(["docker", "buildx", "version"]),
            "repeat": args.repeat,
            "pruned": args.prune,
            "work": args.work,
            "base": base_ref,
            "command": "nox -s bench -- " + shlex.join(argv if argv is not None else sys.argv[1:]),
        },
        "floors": process_floors(),
        "sizes": {},
    }
    started = time.perf_counter()
    try:
        for profiles, images in shapes:
            n = profiles * images
            catalog = catalog_gen.generate(work / f"n{n}-{profiles}x{images}", profiles, images, work=args.work)
            print(
                f"N = {n}: {profiles} profiles × {images} images, depth {catalog.max_depth} ({catalog.root})",
                flush=True,
            )
            scale = Scale(catalog, base_ref, f"{prefix}-n{n}", args.prune)
            t0 = time.perf_counter()

            def log(case: str, tool: str, seconds: float, n: int = n) -> None:
                print(f"  N={n:<4} {case:12} {tool:15} {seconds:8.2f}s", flush=True)

            raw["sizes"][str(n)] = measure_size(scale, args.repeat, log)
            raw["sizes"][str(n)]["wall_s"] = round(time.perf_counter() - t0, 1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    raw["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    found = scale_report.rows(raw) if args.no_write else scale_report.write_results(raw, BENCH)
    print("\n".join(scale_report.markdown_table(found)))
    growth = scale_report.noop_growth(raw)
    if growth:
        print(f"no-op growth N={growth[1]} / N={growth[0]}: {growth[2]:.2f}× (target ≤ {scale_report.NOOP_GROWTH}×)")
    print(
        f"total {raw['meta']['wall_s']:.0f}s" + ("" if args.no_write else "; wrote bench/RESULTS.md, bench/scaling.svg")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
