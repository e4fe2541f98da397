"""Scan every platform's image of every unit of a release with Trivy (from the registry), gate on severity."""

from __future__ import annotations

import json
import os
import queue
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ...build.sbom import trivy_binary
from ...errors import CommandFailed, ScanFailed
from ...events import Emit, Event
from ...oci.credentials import Credentials
from ...record import ReleaseRecord, UnitRecord, load_record, reports_dir, write_atomic
from ...runner import Runner
from ...state import make_dirs, state_dir
from .findings import AllowEntry, GatePolicy, UnitVerdict, image_report_name, judge, parse_report, read_json_report

DB_FILES = ("trivy.db", "metadata.json")
MIRROR_HINT = (
    "no Trivy vulnerability DB could be had: on a machine with internet run `trivy image "
    "--download-db-only --cache-dir DIR`, push DIR/db with `shipyard trivy-db push DIR/db --to "
    "<registry>/<repo>:2`, then scan with --db-repository <registry>/<repo>:2"
)


@dataclass(frozen=True)
class ScanOptions:
    policy: GatePolicy = GatePolicy()
    allowlist: tuple[AllowEntry, ...] = ()
    db_repository: str | None = None
    jobs: int = 2
    cache_dir: Path = Path.home() / ".cache" / "shipyard" / "trivy"
    today: date = field(default_factory=date.today)
    credentials: Credentials | None = None
    # Explicit opt-out for a site with no DB mirror yet: secrets and misconfigurations are still
    # scanned, the record says "vulnerabilities": "skipped", and the output says so loudly.
    skip_vulnerabilities: bool = False


@dataclass
class Trivy:
    runner: Runner
    options: ScanOptions
    binary: str = field(default_factory=trivy_binary)

    @property
    def db_dir(self) -> Path:
        return self.options.cache_dir / "db"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.options.credentials is not None:  # by environment, never argv
            env["TRIVY_USERNAME"] = self.options.credentials.username
            env["TRIVY_PASSWORD"] = self.options.credentials.password.reveal()
        return env

    def ensure_db(self) -> None:
        """Download (or refresh) the DB once, before workers that only read it start."""
        argv = [self.binary, "image", "--download-db-only", "--quiet", "--cache-dir", str(self.options.cache_dir)]
        if self.options.db_repository:
            argv += ["--db-repository", self.options.db_repository]
        try:
            self.runner.run(argv, env=self._env())
        except CommandFailed as exc:
            if all((self.db_dir / name).is_file() for name in DB_FILES):
                return  # a DB is there already; a refresh that cannot reach the network is not fatal
            detail = exc.output.strip().splitlines()[-1:] or [""]
            raise ScanFailed(f"{MIRROR_HINT} (trivy said: {detail[0][:160]})") from None

    def worker_cache(self, index: int) -> Path:
        """A cache dir per worker (Trivy locks its cache), sharing the DB files by hard link."""
        cache = self.options.cache_dir / "workers" / str(index)
        db = cache / "db"
        db.mkdir(parents=True, exist_ok=True)
        for name in DB_FILES:
            target, link = self.db_dir / name, db / name
            link.unlink(missing_ok=True)
            if not target.is_file():  # no DB: only with skip_vulnerabilities
                continue
            try:
                os.link(target, link)
            except OSError:
                shutil.copy2(target, link)
        return cache

    def scan_image(self, ref: str, platform: str, cache: Path, out: Path, *, insecure: bool) -> None:
        scanners = "secret" if self.options.skip_vulnerabilities else "vuln,secret"
        offline = ["--skip-db-update", "--skip-java-db-update", "--offline-scan"]
        source = ["--image-src", "remote", "--platform", platform, *(["--insecure"] if insecure else [])]
        with atomic_output(out) as partial:
            output = ["--quiet", "--format", "json", "--output", str(partial), "--list-all-pkgs"]
            argv = [self.binary, "image", *output, "--scanners", scanners, "--cache-dir", str(cache), *offline, *source]
            self.runner.run([*argv, ref], env=self._env())

    def scan_config(self, directory: Path, cache: Path, out: Path) -> None:
        with atomic_output(out) as partial:
            argv = [self.binary, "config", "--quiet", "--format", "json", "--output", str(partial)]
            argv += ["--skip-check-update", "--cache-dir", str(cache), str(directory)]
            self.runner.run(argv, env=self._env())

    def convert(self, report: Path, fmt: str, out: Path) -> None:
        with atomic_output(out) as partial:
            argv = [self.binary, "convert", "--quiet", "--format", fmt, "--output", str(partial), str(report)]
            self.runner.run(argv, env=self._env())


@contextmanager
def atomic_output(out: Path) -> Iterator[Path]:
    """A path for a tool to write to, renamed to ``out`` only when the tool succeeded: an interrupted
    scan leaves the previous report or none, never a truncated one."""
    partial = out.with_name(f".{out.name}.partial")
    try:
        yield partial
        if partial.exists():
            os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def _unit_dir(project: Path, release: str, key: str) -> Path:
    return reports_dir(project, release) / "scan" / key


def scan_unit(
    trivy: Trivy, project: Path, record: ReleaseRecord, key: str, unit: UnitRecord, cache: Path, insecure: bool
) -> UnitVerdict:
    """Every platform's image of the unit (a multi-platform unit's index: each image in it, by Trivy's
    ``--platform``), each finding naming its platform, and the rendered Dockerfile once."""
    out = _unit_dir(project, record.release, key)
    make_dirs(out)
    platforms = unit.platforms or [unit.platform]
    findings = []
    for platform in platforms:
        image_json = out / image_report_name(platform, unit.platform)
        trivy.scan_image(unit.ref, platform, cache, image_json, insecure=insecure)
        trivy.convert(image_json, "sarif", out / image_report_name(platform, unit.platform, "sarif"))
        sbom = "sbom.cdx.json" if platform == unit.platform else f"sbom.{platform.replace('/', '-')}.cdx.json"
        trivy.convert(image_json, "cyclonedx", out / sbom)
        findings += parse_report(read_json_report(image_json), platform)
    rendered = state_dir(project) / "rendered" / key
    if (rendered / "Dockerfile").is_file():
        config_json = out / "dockerfile.trivy.json"
        trivy.scan_config(rendered, cache, config_json)
        findings += parse_report(read_json_report(config_json))
    options = trivy.options
    return judge(key, findings, options.policy, list(options.allowlist), options.today, platforms)


def _describe(verdict: UnitVerdict) -> str:
    counts = verdict.counts()
    outcome = "ok" if verdict.passed else "BLOCKED by " + ", ".join(sorted({f.id for f in verdict.blocking}))
    scanned = f", scanned {', '.join(verdict.platforms)}" if len(verdict.platforms) > 1 else ""
    return (
        f"{outcome} (critical {counts['CRITICAL']}, high {counts['HIGH']}, medium {counts['MEDIUM']}, "
        f"secrets {verdict.to_record()['secrets']}{scanned})"
    )


def scan_release(
    project: Path, record_path: Path, runner: Runner, options: ScanOptions, emit: Emit
) -> list[UnitVerdict]:
    record = load_record(record_path)
    trivy = Trivy(runner, options)
    if options.skip_vulnerabilities:
        emit(
            Event(
                "scan.warning",
                "WARNING: vulnerability scanning skipped (--skip-vulnerabilities): only secrets "
                "and Dockerfile misconfigurations are checked; mirror a Trivy DB to scan for CVEs",
            )
        )
        trivy.db_dir.mkdir(parents=True, exist_ok=True)
    else:
        trivy.ensure_db()
    host = record.registry.split("/", 1)[0]
    insecure = host.split(":")[0] in ("localhost", "127.0.0.1")
    jobs = max(1, min(options.jobs, len(record.units)))
    free_caches: queue.Queue[Path] = queue.Queue()
    for i in range(jobs):
        free_caches.put(trivy.worker_cache(i))
    started = time.monotonic()

    def work(item: tuple[str, UnitRecord]) -> UnitVerdict:
        key, unit = item
        cache = free_caches.get()  # one trivy process per cache dir at a time
        try:
            verdict = scan_unit(trivy, project, record, key, unit, cache, insecure)
        finally:
            free_caches.put(cache)
        emit(Event("scan.unit", f"{key}: {_describe(verdict)}", unit=key))
        return verdict

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        verdicts = list(pool.map(work, record.units.items()))
    for verdict in verdicts:
        record.units[verdict.unit].verdicts["scan"] = verdict.to_record() | {
            "vulnerabilities": "skipped" if options.skip_vulnerabilities else "scanned"
        }
    write_atomic(record_path, record.to_json())
    summary = reports_dir(project, record.release) / "scan.json"
    write_atomic(
        summary,
        json.dumps(
            {
                "release": record.release,
                "passed": all(v.passed for v in verdicts),
                "jobs": jobs,
                "seconds": round(time.monotonic() - started, 2),
                "units": {v.unit: v.to_record() for v in verdicts},
            },
            indent=2,
        )
        + "\n",
    )
    emit(Event("record", f"scan reports: {summary.parent / 'scan'}", data={"path": str(summary)}))
    blocked = [v for v in verdicts if not v.passed]
    if blocked:
        ids = sorted({f.id for v in blocked for f in v.blocking})
        raise ScanFailed(
            f"scan: {len(blocked)} unit(s) of {record.release} blocked by {', '.join(ids[:5])}"
            f"{' …' if len(ids) > 5 else ''}; see {summary}"
        )
    return verdicts
