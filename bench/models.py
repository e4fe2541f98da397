"""Releasing a new version of a 1 GiB model: shipyard (push, verify, sign) vs `oras push`, in one run (`--models`).

    nox -s bench -- --models [--rounds 3] [--size-mib 1024]

A model directory (one random, non-sparse weight file and a small config.json) is generated in a temp
dir, and its first version pushed by each side, not measured. Each round then changes a 1 MiB block of
the weight file at a new offset (a new version: a new digest, so its whole layer really moves; the
config is unchanged, so neither side uploads it again) and releases it with each side, the order
alternating, each into a repository of its own under a new namespace of the local registry:

- shipyard: one child process that hashes the files (``scan_model``), pushes the ModelPack
  (``push_model``), verifies it from the registry (``verify_model(..., deep=True)``: every layer's
  bytes downloaded and hashed again) and signs its manifest digest (``push_signature``, a throwaway key);
- oras: ``oras push --plain-http`` of the same two files (their paths as titles, the same media types).

Each side runs as its own child process, reaped with ``os.wait4``, so its seconds (from start to exit:
the interpreter and imports included) and its peak RSS are its own. Min and median of the rounds, and
the ratios to oras measured in the same run, are written to bench/RESULTS.md with the raw figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "RESULTS.md"
REGISTRY = "127.0.0.1:5000"
WEIGHTS = "weights/model.safetensors"
CONFIG = "config.json"
NAME, FORMAT = "bench-model", "safetensors"
MIB = 1 << 20
BLOCK = MIB  # what a new version changes in the weight file
SIDES = ("shipyard", "oras")


def make_model(root: Path, size: int) -> Path:
    """A model directory: ``size`` random bytes of weights (written, not sparse) and a config.json."""
    (root / WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
    (root / CONFIG).write_text(json.dumps({"architectures": ["BenchModel"], "hidden_size": 1024}) + "\n")
    with (root / WEIGHTS).open("wb") as stream:
        left = size
        while left > 0:
            chunk = min(16 * MIB, left)
            stream.write(os.urandom(chunk))
            left -= chunk
    return root


def new_version(root: Path, version: int) -> int:
    """Overwrite one block of the weight file with new random bytes, at an offset of this version's: the
    offset written (the file keeps its size; its digest changes)."""
    path = root / WEIGHTS
    size = path.stat().st_size
    block = min(BLOCK, size)
    offset = random.Random(version).randrange(0, size - block + 1)
    with path.open("r+b") as stream:
        stream.seek(offset)
        stream.write(os.urandom(block))
    return offset


def release_shipyard(registry: Any, repository: str, directory: Path, tag: str, key: Any) -> dict[str, Any]:
    """Push, verify (deep) and sign one version of the model: the seconds of each phase and what was sent.

    ``SystemExit`` when verify finds a problem or the signature is not there after: a bench of a broken
    release measures nothing."""
    from shipyard.oci.cosign import push_signature, verified_signers
    from shipyard.oci.modelfiles import scan_model
    from shipyard.oci.modelpack import LocalModel, push_model, verify_model

    started = time.perf_counter()
    files = scan_model(directory)
    hashed = time.perf_counter()
    pushed = push_model(registry, repository, LocalModel(directory, NAME, FORMAT, files), tag=tag)
    uploaded = time.perf_counter()
    problems = verify_model(registry, repository, pushed.digest, deep=True)
    verified = time.perf_counter()
    if problems:
        raise SystemExit(f"verify of {repository}@{pushed.digest}: {'; '.join(problems)}")
    push_signature(registry, repository, pushed.digest, f"{registry.target.host}/{repository}", key)
    signed = time.perf_counter()
    if key.public.key_id not in verified_signers(registry, repository, pushed.digest, [key.public]):
        raise SystemExit(f"{repository}@{pushed.digest}: no signature by the bench key after push_signature")
    return {
        "digest": pushed.digest,
        "uploaded_bytes": pushed.uploaded_bytes,
        "uploaded": list(pushed.uploaded),
        "hash_s": round(hashed - started, 3),
        "upload_s": round(uploaded - hashed, 3),
        "verify_s": round(verified - uploaded, 3),
        "sign_s": round(signed - verified, 3),
    }


def child(directory: Path, repository: str, tag: str) -> int:
    """The shipyard side, in its own process: one release, its phases as one JSON line on stdout."""
    from shipyard.config.registry import parse_registry
    from shipyard.oci.client import RegistryClient
    from shipyard.oci.signing import SigningKey

    key = SigningKey.generate()
    with RegistryClient(parse_registry(f"{REGISTRY}/bench")) as registry:
        print(json.dumps(release_shipyard(registry, repository, directory, tag, key)), flush=True)
    return 0


def oras_argv(repository: str, tag: str) -> list[str]:
    """``oras push`` of the model's files, run in the model directory: relative paths become the layers'
    titles, and each layer gets the media type shipyard gives it."""
    from shipyard.oci.modelfiles import media_type_of
    from shipyard.oci.modelpack import ARTIFACT_TYPE

    files = [f"{path}:{media_type_of(path)[0]}" for path in sorted((CONFIG, WEIGHTS))]
    return ["oras", "push", f"{REGISTRY}/{repository}:{tag}", "--plain-http", "--artifact-type", ARTIFACT_TYPE, *files]


def shipyard_argv(directory: Path, repository: str, tag: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--child", str(directory), repository, tag]


def measured(argv: list[str], *, cwd: Path | None = None) -> dict[str, Any]:
    """Run ``argv`` as a child process: its seconds (start to exit), peak RSS (MiB) and output."""
    started = time.perf_counter()
    with subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not every child's so far
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{output[-3000:]}")
    return {"s": round(seconds, 3), "rss_mib": round(usage.ru_maxrss / 1024, 1), "output": output}


def release(side: str, directory: Path, namespace: str, tag: str) -> dict[str, Any]:
    repository = f"{namespace}/{side}/{NAME}"
    if side == "oras":
        found = measured(oras_argv(repository, tag), cwd=directory)
        found.pop("output")
        return found
    found = measured(shipyard_argv(directory, repository, tag))
    found["phases"] = json.loads(found.pop("output").strip().splitlines()[-1])
    return found


def floors() -> dict[str, dict[str, float]]:
    """What each side costs before it moves a byte: a Python start with the shipyard modules the child
    imports, and ``oras version``."""
    imports = "import shipyard.oci.client, shipyard.oci.cosign, shipyard.oci.modelpack, shipyard.oci.signing"
    found = {
        "shipyard imports": measured([sys.executable, "-c", imports]),
        "oras version": measured(["oras", "version"]),
    }
    return {name: {"s": value["s"], "rss_mib": value["rss_mib"]} for name, value in found.items()}


def cleanup_registry(namespace: str) -> None:
    """Delete the bench's manifests (the registry frees the blobs at its next garbage-collect)."""
    from shipyard.config.registry import parse_registry
    from shipyard.oci.client import RegistryClient

    with RegistryClient(parse_registry(f"{REGISTRY}/bench")) as registry:
        for side in SIDES:
            repository = f"{namespace}/{side}/{NAME}"
            digests = {registry.resolve(repository, tag) for tag in registry.tags(repository)}
            for digest in sorted(d for d in digests if d):
                registry.delete_manifest(repository, digest)


def run_bench(rounds: int, size: int, work: Path, namespace: str) -> dict[str, Any]:
    directory = make_model(work / "model", size)
    raw: dict[str, Any] = {"floors": floors(), "rounds": []}
    for side in SIDES:
        release(side, directory, namespace, "v0")  # the version before: not measured
    for i in range(rounds):
        offset = new_version(directory, i + 1)
        order = list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
        found: dict[str, Any] = {"order": order, "changed_offset": offset}
        for side in order:
            found[side] = release(side, directory, namespace, f"v{i + 1}")
        raw["rounds"].append(found)
        ship, oras = found["shipyard"], found["oras"]
        print(
            f"models, round {i + 1}: shipyard {ship['s']:.2f} s ({ship['rss_mib']:.0f} MiB; {ship['phases']}), "
            f"oras {oras['s']:.2f} s ({oras['rss_mib']:.0f} MiB)",
            flush=True,
        )
    return raw


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(Path(argv[1]), argv[2], argv[3])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", action="store_true", help="(the flag that selects this benchmark)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024, help="the weight file's size (default: 1 GiB)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the RESULTS.md to write (its models section)")
    args = parser.parse_args(argv)
    if shutil.which("oras") is None:
        raise SystemExit("oras is not on PATH: run scripts/up.sh (Debian: apt-get install oras)")
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-models-"))
    namespace = f"bench-models-{uuid.uuid4().hex[:6]}"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    try:
        raw = run_bench(args.rounds, args.size_mib * MIB, work, namespace)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            cleanup_registry(namespace)
        except Exception as exc:  # a leftover namespace is no reason to lose the figures
            print(f"left {REGISTRY}/{namespace} in the registry: {exc}", file=sys.stderr)
    raw["meta"] = {**meta(args.rounds, args.size_mib * MIB, namespace), "load": load}
    print("\n".join(write_results(raw, args.results)))
    return 0


def meta(rounds: int, size: int, namespace: str) -> dict[str, Any]:
    oras = subprocess.run(["oras", "version"], capture_output=True, text=True).stdout.split()
    registry = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True).stdout.split()
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
    )
    return {
        "measured": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "host": platform.node(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "python": platform.python_version(),
        "oras": oras[oras.index("Version:") + 1] if "Version:" in oras else "?",
        "registry": " ".join(registry[1:3]) if registry else "?",
        "rounds": rounds,
        "weight_bytes": size,
        "namespace": namespace,
        "command": "nox -s bench -- --models"
        + (f" --rounds {rounds}" if rounds != 3 else "")
        + (f" --size-mib {size // MIB}" if size != 1024 * MIB else ""),
    }


def summary(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows: each measured thing's min and median seconds, the weights' MB per second, the
    side's peak RSS (whole processes) and the ratio of the median to oras push's (like for like only)."""
    rounds = raw["rounds"]
    ship = [r["shipyard"] for r in rounds]

    def phases(*names: str) -> list[float]:
        return [round(sum(s["phases"][f"{n}_s"] for n in names), 3) for s in ship]

    # (side, what, seconds per round, a whole process?, compared with oras push?, moves the weights?)
    rows = [
        ("shipyard", "release: hash, push, verify --deep, sign (the whole child process)", [s["s"] for s in ship],
         True, True, True),
        ("shipyard", "of which push: hash the files, upload what the registry lacks", phases("hash", "upload"),
         False, True, True),
        ("shipyard", "of which verify: manifest, config, every layer downloaded and hashed", phases("verify"),
         False, False, True),
        ("shipyard", "of which sign: the manifest digest, cosign's layout", phases("sign"), False, False, False),
        ("oras", "`oras push` of the same files (the whole process)", [r["oras"]["s"] for r in rounds],
         True, True, True),
    ]  # fmt: skip
    rss = {"shipyard": [s["rss_mib"] for s in ship], "oras": [r["oras"]["rss_mib"] for r in rounds]}
    anchor = statistics.median(r["oras"]["s"] for r in rounds)
    found = []
    for side, what, values, whole, compared, moves in rows:
        median = statistics.median(values)
        found.append(
            {
                "side": side,
                "what": what,
                "min_s": min(values),
                "median_s": median,
                "mb_s": raw["meta"]["weight_bytes"] / 1e6 / median if moves and median else None,
                "rss_mib": max(rss[side]) if whole else None,
                "ratio": median / anchor if compared and anchor else None,
            }
        )
    return found


def write_results(raw: dict[str, Any], results: Path) -> list[str]:
    """Write the models section of ``results``; the table's lines."""
    rows = summary(raw)
    lines = [
        "| side | what | min s | median s | median MB/s of the weights | peak RSS MiB (max of rounds) "
        "| ratio to `oras push` (median) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        rate = f"{row['mb_s']:.0f}" if row["mb_s"] else ""
        rss = f"{row['rss_mib']:.0f}" if row["rss_mib"] is not None else ""
        ratio = f"**{row['ratio']:.2f}×**" if row["ratio"] is not None else ""
        lines.append(
            f"| {row['side']} | {row['what']} | {row['min_s']:.2f} | {row['median_s']:.2f} | {rate} | {rss} | {ratio} |"
        )
    meta, fl = raw["meta"], raw["floors"]
    release_s, push_s, verify_s, sign_s, oras_s = (row["median_s"] for row in rows)
    ship_rss = max(r["shipyard"]["rss_mib"] for r in raw["rounds"])
    oras_rss = max(r["oras"]["rss_mib"] for r in raw["rounds"])
    lines += [
        "",
        f"Peak RSS, shipyard over oras: **{ship_rss / oras_rss:.2f}×**. Floors (no bytes moved): a Python start "
        f"with the modules the shipyard child imports, {fl['shipyard imports']['s']:.2f} s and "
        f"{fl['shipyard imports']['rss_mib']:.0f} MiB; `oras version`, {fl['oras version']['s']:.2f} s and "
        f"{fl['oras version']['rss_mib']:.0f} MiB.",
        "",
        f"What they mean: a shipyard release takes {release_s - oras_s:+.2f} s against an oras push (medians). "
        f"Its push alone is {push_s / oras_s:.2f}× oras's; what oras does not do, the deep verify's read-back of "
        f"every layer ({verify_s:.2f} s) and the signature ({sign_s:.2f} s), is the rest. Both stream the file: "
        f"their peak RSS is "
        f"{ship_rss - fl['shipyard imports']['rss_mib']:.0f} MiB (shipyard) and "
        f"{oras_rss - fl['oras version']['rss_mib']:.0f} MiB (oras) above their floors, for a "
        f"{meta['weight_bytes'] / MIB:.0f} MiB weight file.",
    ]
    from scale_report import save_section  # bench/ is on sys.path: this file runs as a script

    size_mib = meta["weight_bytes"] / MIB
    heading = [
        f"## Models: releasing a new version of a {size_mib / 1024:g} GiB model, shipyard vs `oras push`",
        "",
        f"Measured {meta['measured']} on {meta['host']}: {meta['cores']} cores, {meta['memory_gib']} GiB of memory, "
        f"load average {meta.get('load', '?')} at the start, "
        f"Python {meta['python']}, oras {meta['oras']}, registry {meta['registry']} on {REGISTRY} (plain HTTP, "
        f"this host's disk). Command: `{meta['command']}`. A model of a {size_mib:.0f} MiB random weight file "
        f"(`{WEIGHTS}`, not sparse) and a small `{CONFIG}`; its first version pushed by each side, not "
        f"measured; then {meta['rounds']} rounds, each a new version (a {BLOCK // MIB} MiB block of the weights "
        "overwritten with new random bytes: a new digest, so the whole layer moves; the config is unchanged and "
        "neither side sends it again), released by each side into a repository of its own, the order alternating. "
        "Every side is a child process of its own, reaped with `os.wait4`: its seconds run from its start to its "
        "exit (interpreter and imports included), its peak RSS is its own.",
        "",
        "- **shipyard release**: `scan_model` (hash every file), `push_model` (upload the blobs the registry "
        "lacks, then the manifest), `verify_model(..., deep=True)` (manifest and config against the spec, every "
        "layer's bytes downloaded from the registry and hashed again), `push_signature` (the manifest digest, "
        "signed with a throwaway P-256 key). Its phases are timed inside the child.",
        "- **oras push**: `oras push --plain-http --artifact-type <ModelPack> config.json:<type> "
        "weights/model.safetensors:<type>`: hashes and uploads the same files, verifies and signs nothing. "
        "The anchor: its ratio is shipyard's median over oras's median in this run.",
        "- **of which push** is the like-for-like comparison with oras (both hash the files and upload them "
        "once); the release also reads the weights back from the registry (verify) and signs. MB/s: the "
        "weight file's bytes over the median seconds.",
        "",
        *lines,
    ]
    save_section(results, "models", heading, raw, "Raw figures")
    return lines


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
