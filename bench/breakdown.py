"""Where a build's seconds go: a cold and a one-changed build of a generated catalog, read from shipyard's
own output (-vv: every buildx line, by unit) and from a sampling profile of shipyard's Python.

Per run: the wall; per BuildKit vertex kind the seconds its steps took, summed over units (setup, cache
import, the Dockerfile steps, export, push, cache export, provenance); what the attestations took per
unit (SBOM, signature) and how long the build waited for them after its last push; the gaps between a
parent's push and the start of its children's buildx; and shipyard's own CPU (py-spy samples).

    python bench/breakdown.py --scale 18            # writes the breakdown section of bench/RESULTS.md
    python bench/breakdown.py --scale 6 --no-write  # a quick look
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import catalog_gen
from scale import REGISTRY, local_base, run

BENCH = Path(__file__).resolve().parent
UNIT_LINE = re.compile(r"^  (?P<unit>\S+) \| (?P<line>.*)$")
VERTEX = re.compile(r"^#(?P<id>\d+) (?P<text>.+)$")
DONE = re.compile(r"^#(?P<id>\d+) DONE (?P<s>\d+(?:\.\d+)?)s$")
SUB_DONE = re.compile(r"^#(?P<id>\d+) (?P<what>.+?) (?P<s>\d+(?:\.\d+)?)s done$")
ATTESTED = re.compile(r"(?P<unit>\S+): (?P<what>.*) in (?P<s>\d+(?:\.\d+)?)s$")
KINDS = (  # a vertex's first line -> its kind
    (re.compile(r"^\[internal\] load|^\[\S+ internal\] load|^\[context \S+\] load|^resolve "), "setup"),
    (re.compile(r"^importing cache manifest"), "cache import"),
    (re.compile(r"^\[(?:\S+ )?\d+/\d+\] (?:FROM|RUN|COPY|ADD|WORKDIR|USER|ENV)"), "Dockerfile steps"),
    (re.compile(r"^exporting to (?:image|oci)"), "export + push"),
    (re.compile(r"^exporting cache"), "cache export"),
    (re.compile(r"^resolving provenance"), "provenance"),
    (re.compile(r"^pushing \S+ with docker"), "push again by the engine"),
)
SUBSTEPS = {  # sub-steps of "exporting to image" and "exporting cache", by what they print
    "exporting layers": "export: layers",
    "exporting manifest": "export: manifest",
    "exporting config": "export: config",
    "exporting attestation manifest": "export: attestation manifest",
    "exporting manifest list": "export: manifest list",
    "pushing layers": "push: layers",
    "pushing manifest": "push: manifest",
    "preparing build cache for export": "cache export: prepare",
    "writing layer": "cache export: layers",
    "writing config": "cache export: config",
    "writing cache image manifest": "cache export: manifest",
}


@dataclass
class UnitTimes:
    first: float = -1.0  # the first and last buildx line of this unit, seconds from the start (-1: none)
    last: float = -1.0
    kinds: Counter[str] = field(default_factory=Counter)
    attest_s: float = 0.0
    attested_at: float = 0.0
    built: bool = False


@dataclass
class BuildTimes:
    wall: float
    units: dict[str, UnitTimes]
    vertex_kinds: Counter[str]
    substeps: Counter[str]
    python_cpu_s: float
    top_python: list[tuple[str, float]]

    def attest_tail(self) -> float:
        """How long the build ran after its last buildx line: waiting for attestations and signatures."""
        last_build = max((u.last for u in self.units.values() if u.built), default=0.0)
        return max(0.0, self.wall - last_build)


def read_output(lines: Iterator[tuple[float, str]]) -> tuple[dict[str, UnitTimes], Counter[str], Counter[str]]:
    units: dict[str, UnitTimes] = defaultdict(UnitTimes)
    names: dict[tuple[str, str], str] = {}
    kinds: Counter[str] = Counter()
    subs: Counter[str] = Counter()
    for at, text in lines:
        if m := UNIT_LINE.match(text):
            unit, line = m.group("unit"), m.group("line")
            times = units[unit]
            times.first = at if times.first < 0 else times.first
            times.last, times.built = at, True
            if d := DONE.match(line):
                kind = names.get((unit, d.group("id")), "other")
                kinds[kind] += float(d.group("s"))
                times.kinds[kind] += float(d.group("s"))
            elif s := SUB_DONE.match(line):
                what = next((v for k, v in SUBSTEPS.items() if s.group("what").startswith(k)), None)
                if what:
                    subs[what] += float(s.group("s"))
            elif v := VERTEX.match(line):
                key = (unit, v.group("id"))
                if key not in names:
                    names[key] = next((kind for r, kind in KINDS if r.search(v.group("text"))), "other")
        elif (a := ATTESTED.search(text)) and ("SBOM" in text or "signed" in text or "signature" in text):
            unit = a.group("unit")
            units[unit].attest_s += float(a.group("s"))
            units[unit].attested_at = at
    return dict(units), kinds, subs


def py_spy_summary(path: Path, rate: int) -> tuple[float, list[tuple[str, float]]]:
    """Seconds of shipyard's own Python on a core (py-spy's raw samples) and the functions that took most."""
    if not path.is_file():
        return 0.0, []
    samples, by_leaf = 0, Counter[str]()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples += int(count)
        frames = stack.split(";")
        ours = [f for f in frames if "shipyard" in f]
        by_leaf[(ours[-1] if ours else frames[-1]).split(" (")[0]] += int(count)
    return samples / rate, [(name, n / rate) for name, n in by_leaf.most_common(8)]


def timed_build(project: Path, env: dict[str, str], work: Path, label: str) -> BuildTimes:
    rate = 100
    profile = work / f"{label}.pyspy.txt"
    argv = [sys.executable, "-m", "shipyard", "--project", str(project), "build", "-vv"]
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if Path(spy).is_file():
        argv = [spy, "record", "--format", "raw", "--rate", str(rate), "--subprocesses", "--nonblocking",
                "-o", str(profile), "--", *argv]  # fmt: skip
    started = time.perf_counter()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        argv,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for text in proc.stdout:
            lines.append((time.perf_counter() - started, text.rstrip("\n")))
    wall = time.perf_counter() - started
    (work / f"{label}.log").write_text("\n".join(f"{at:8.3f} {text}" for at, text in lines))
    if proc.returncode != 0 or any(text.startswith("shipyard: error") for _, text in lines):  # py-spy exits 0
        raise SystemExit(f"{label}: shipyard build exited {proc.returncode}:\n" + "\n".join(t for _, t in lines[-30:]))
    units, kinds, subs = read_output(iter(lines))
    cpu, top = py_spy_summary(profile, rate)
    return BuildTimes(wall, units, kinds, subs, cpu, top)


def gaps(times: BuildTimes, parents: dict[str, str], profiles: list[str]) -> list[float]:
    """Seconds between a parent unit's last buildx line (its push done) and its child's first."""
    out = []
    for profile in profiles:
        for image, parent in parents.items():
            child, mother = times.units.get(f"{profile}/{image}"), times.units.get(f"{profile}/{parent}")
            if child and mother and child.built and mother.built:
                out.append(max(0.0, child.first - mother.last))
    return out


def section(runs: dict[str, BuildTimes], meta: dict[str, str], parents: dict[str, str], profiles: list[str]) -> str:
    lines = [
        "## Where the seconds go: a cold and a one-changed build, broken down",
        "",
        f"Measured {meta['measured']} on {meta['host']}: {meta['cores']} cores, {meta['docker']}; N = {meta['n']} "
        f"(bench/catalog_gen.py). Command: `{meta['command']}`. Seconds are summed over units, so "
        "concurrent work adds up to more than the wall; each row says what kind of work it is.",
        "",
        "| | " + " | ".join(runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]

    def row(name: str, values: list[float], fmt: str = "{:.2f}") -> None:
        lines.append(f"| {name} | " + " | ".join(fmt.format(v) for v in values) + " |")

    row("wall (s)", [t.wall for t in runs.values()])
    row("units built by buildx", [sum(1 for u in t.units.values() if u.built) for t in runs.values()], "{:.0f}")
    spans = [sum(u.last - u.first for u in t.units.values() if u.built) for t in runs.values()]
    row("buildx processes, summed (s)", spans)
    kinds = ("setup", "cache import", "Dockerfile steps", "export + push", "cache export", "provenance")
    for kind in (*kinds, "push again by the engine", "other"):
        row(f"  BuildKit: {kind}", [t.vertex_kinds.get(kind, 0.0) for t in runs.values()])
    for sub in dict.fromkeys(SUBSTEPS.values()):
        if any(t.substeps.get(sub) for t in runs.values()):
            row(f"    {sub}", [t.substeps.get(sub, 0.0) for t in runs.values()])
    row(
        "attestations (SBOM, signature), summed (s)", [sum(u.attest_s for u in t.units.values()) for t in runs.values()]
    )
    row("waited for attestations after the last push (s)", [t.attest_tail() for t in runs.values()])
    all_gaps = [gaps(t, parents, profiles) for t in runs.values()]
    row("parent pushed → child's buildx started, summed (s)", [sum(g) for g in all_gaps])
    row("  the same, median per edge (s)", [sorted(g)[len(g) // 2] if g else 0.0 for g in all_gaps])
    row("shipyard's own Python on a core (s)", [t.python_cpu_s for t in runs.values()])
    lines.append("")
    for label, t in runs.items():
        if t.top_python:
            lines.append(
                f"shipyard's Python, {label}, most samples: "
                + ", ".join(f"`{n}` {s:.2f} s" for n, s in t.top_python[:5])
            )
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=18, metavar="N", help="units (default %(default)s)")
    parser.add_argument("--no-prune", dest="prune", action="store_false", help="leave the build cache be")
    parser.add_argument("--no-write", action="store_true", help="print; leave bench/RESULTS.md as it is")
    parser.add_argument("--work", type=int, default=catalog_gen.DEFAULT_WORK, help="hash rounds per RUN step")
    args = parser.parse_args(argv)
    profiles, images = catalog_gen.shape_for(args.scale)
    base_ref = local_base(f"{REGISTRY}/bench-base")
    work = Path(tempfile.mkdtemp(prefix="shipyard-breakdown-"))
    catalog = catalog_gen.generate(work / "project", profiles, images, work=args.work)
    namespace = f"bench-breakdown-{uuid.uuid4().hex[:6]}"
    env = {"SHIPYARD_REGISTRY": f"{REGISTRY}/{namespace}", "SHIPYARD_BASE_OVERRIDE": f"python={base_ref}"}
    if args.prune:
        run(["docker", "buildx", "prune", "-af"])
    runs = {"cold": timed_build(catalog.root, env, work, "cold")}
    catalog_gen.change_image(catalog, catalog_gen.CHANGED_IMAGE, f"change {uuid.uuid4().hex[:8]}")
    runs["one changed"] = timed_build(catalog.root, env, work, "one-changed")
    meta = {
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "host": os.uname().nodename,
        "cores": str(os.cpu_count()),
        "docker": "Docker engine " + run(["docker", "version", "--format", "{{.Server.Version}}"]).strip(),
        "n": str(profiles * images),
        "command": "nox -s bench -- --breakdown " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    text = section(runs, meta, catalog.parents, catalog.profiles)
    print(text)
    print(f"logs and profiles: {work}")
    if not args.no_write:
        from scale_report import save_section

        raw = {
            "meta": meta,
            "runs": {
                label: {
                    "wall_s": round(t.wall, 2),
                    "vertex_kinds_s": {k: round(v, 2) for k, v in t.vertex_kinds.items()},
                    "substeps_s": {k: round(v, 2) for k, v in t.substeps.items()},
                    "attest_s": {u: round(x.attest_s, 2) for u, x in t.units.items() if x.attest_s},
                    "python_cpu_s": round(t.python_cpu_s, 2),
                }
                for label, t in runs.items()
            },
        }
        save_section(BENCH / "RESULTS.md", "breakdown", text.splitlines(), raw, "Raw figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
