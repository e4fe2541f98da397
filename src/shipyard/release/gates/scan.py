"""Scan every platform's image of every unit of a release with Trivy (from the registry), gate on severity.

``ScanGate`` is scan as a member of the ``Gate`` shape (gate.py): ``run`` scans every unit, stores the
typed verdicts in the record and writes ``scan.json``; ``conclude`` raises ``ScanFailed`` for what blocks.
"""

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
from typing import Any, ClassVar

from ...build.sbom import trivy_binary
from ...errors import CommandFailed, ScanFailed
from ...events import Emit, Event
from ...oci.credentials import Credentials
from ...record import ReleaseRecord, UnitRecord, load_record, reports_dir, write_atomic
from ...runner import Runner
from ...state import make_dirs, project_state_dir
from ...verdicts import GateName
from .findings import AllowEntry, GatePolicy, ScanResult, image_report_name, judge, parse_report, read_json_report

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
) -> ScanResult:
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
    rendered = project_state_dir(project) / "rendered" / key
    if (rendered / "Dockerfile").is_file():
        config_json = out / "dockerfile.trivy.json"
        trivy.scan_config(rendered, cache, config_json)
        findings += parse_report(read_json_report(config_json))
    options = trivy.options
    return judge(key, findings, options.policy, list(options.allowlist), options.today, platforms)


def _describe(result: ScanResult) -> str:
    counts = result.counts()
    outcome = "ok" if result.passed else "BLOCKED by " + ", ".join(sorted({f.id for f in result.blocking}))
    scanned = f", scanned {', '.join(result.platforms)}" if len(result.platforms) > 1 else ""
    return (
        f"{outcome} (critical {counts['CRITICAL']}, high {counts['HIGH']}, medium {counts['MEDIUM']}, "
        f"secrets {result.verdict().secrets}{scanned})"
    )


@dataclass(frozen=True)
class ScanReport:
    """The scan of a release: each unit's result, and the summary written beside the trivy reports."""

    release: str
    units: list[ScanResult]
    summary: Path

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.units)


@dataclass(frozen=True)
class ScanGate:
    """scan as a gate: every unit's images (from the registry) and rendered Dockerfile with Trivy, run by
    ``runner``, judged by ``options``' policy and allowlist; reports under ``project``'s state."""

    name: ClassVar[GateName] = "scan"
    project: Path
    runner: Runner
    options: ScanOptions

    def policy(self) -> dict[str, Any]:
        gate = self.options.policy
        return {"severity": gate.text, "ignore_unfixed": gate.ignore_unfixed,
                "vulnerabilities": not self.options.skip_vulnerabilities}  # fmt: skip

    def model_policy(self) -> dict[str, Any] | None:
        return None  # a model's files are data: nothing to scan

    def run(self, record_path: Path, emit: Emit) -> ScanReport:
        """Scan every unit, store the verdicts in the record and write ``scan.json``."""
        project, options = self.project, self.options
        record = load_record(record_path)
        trivy = Trivy(self.runner, options)
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

        def work(item: tuple[str, UnitRecord]) -> ScanResult:
            key, unit = item
            cache = free_caches.get()  # one trivy process per cache dir at a time
            try:
                result = scan_unit(trivy, project, record, key, unit, cache, insecure)
            finally:
                free_caches.put(cache)
            emit(Event("scan.unit", f"{key}: {_describe(result)}", unit=key))
            return result

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(work, record.units.items()))
        for result in results:
            record.units[result.unit].verdicts.scan = result.verdict(
                "skipped" if options.skip_vulnerabilities else "scanned"
            )
        write_atomic(record_path, record.to_json())
        summary = reports_dir(project, record.release) / "scan.json"
        # scan.json's units as they always were: the record's verdict without its record-only "vulnerabilities"
        units = {r.unit: {k: v for k, v in r.verdict().to_dict().items() if k != "vulnerabilities"} for r in results}
        write_atomic(
            summary,
            json.dumps(
                {
                    "release": record.release,
                    "passed": all(r.passed for r in results),
                    "jobs": jobs,
                    "seconds": round(time.monotonic() - started, 2),
                    "units": units,
                },
                indent=2,
            )
            + "\n",
        )
        emit(Event("record", f"scan reports: {summary.parent / 'scan'}", data={"path": str(summary)}))
        return ScanReport(record.release, results, summary)

    def conclude(self, report: ScanReport, emit: Emit) -> ScanReport:
        """Raise when any unit is blocked, naming the first findings that block."""
        blocked = [r for r in report.units if not r.passed]
        if blocked:
            ids = sorted({f.id for r in blocked for f in r.blocking})
            raise ScanFailed(
                f"scan: {len(blocked)} unit(s) of {report.release} blocked by {', '.join(ids[:5])}"
                f"{' …' if len(ids) > 5 else ''}; see {report.summary}"
            )
        return report
