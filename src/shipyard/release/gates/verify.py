"""Verify what was pushed, from the registry only: every check on every unit, all failures reported.

``VerifyGate`` is verify as a member of the ``Gate`` shape (gate.py): ``run`` holds every unit's images
and every model to their checks and stores the typed verdicts in the record, ``conclude`` writes the JSON
report and raises ``VerifyFailed``; the verdicts are signed between the two, by gate.py alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from ...errors import RegistryError, VerifyFailed
from ...events import Emit, Event
from ...oci.client import RegistryClient
from ...oci.signing import PublicKey
from ...record import ReleaseRecord, UnitRecord, load_record, reports_dir, write_atomic
from ...verdicts import GateName, ModelVerifyVerdict, VerifyPlatform, VerifyVerdict
from .checks import CHECKS, PER_PLATFORM, Finding, Reads, UnitImage, check_name, run_checks
from .model_checks import MODEL_CHECKS, check_model, model_key

PARALLEL_UNITS = 8  # units checked at once: their time is registry round trips and layer reads


@dataclass
class VerifyReport:
    release: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "fail"]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> str:
        return (
            json.dumps(
                {"release": self.release, "passed": self.passed, "findings": [_finding_json(f) for f in self.findings]},
                indent=2,
            )
            + "\n"
        )


def _finding_json(finding: Finding) -> dict[str, str]:
    data = asdict(finding)
    if not data["platform"]:
        del data["platform"]  # single-platform units: the report as it always was
    return data


class Verifier:
    def __init__(
        self,
        record: ReleaseRecord,
        registry: RegistryClient,
        emit: Emit,
        trusted: Sequence[PublicKey] = (),
        layer_cache: Path | None = None,
    ) -> None:
        self.record = record
        self.registry = registry
        self.emit = emit
        self.trusted = list(trusted)
        self.host = record.registry.split("/", 1)[0]
        self.reads = Reads.of(registry, self.host, trusted, layer_cache)  # what the checks read

    def run(self) -> VerifyReport:
        """Units and models checked side by side (registry round trips, a model's bytes read once); the
        report and the events in record order, the models after the images."""
        report = VerifyReport(self.record.release)
        with ThreadPoolExecutor(max_workers=PARALLEL_UNITS) as pool:
            results = pool.map(lambda item: (item[0], list(self._unit(*item))), self.record.units.items())
            models = pool.map(
                lambda item: (model_key(item[0]), check_model(self.registry, self.trusted, *item)),
                self.record.models.items(),
            )
            for key, findings in [*results, *models]:
                self._told(report, key, findings)
        return report

    def _told(self, report: VerifyReport, key: str, findings: list[Finding]) -> None:
        report.findings += findings
        failed = [f.check for f in findings if f.status == "fail"]
        self.emit(
            Event(
                "verify.unit",
                f"{key}: {'FAIL ' + ', '.join(failed) if failed else 'ok'} "
                f"({sum(f.status == 'pass' for f in findings)} checks passed)",
                unit=key,
                data={"failed": failed},
            )
        )

    def _unit(self, key: str, unit: UnitRecord) -> Iterator[Finding]:
        repository = unit.repository.removeprefix(self.host + "/")
        try:
            index = self.registry.manifest(repository, unit.digest)
            if index is None:
                yield Finding(key, "manifest", "fail", f"{unit.repository}@{unit.digest}", "not in the registry")
                return
        except (RegistryError, KeyError, ValueError) as exc:
            yield Finding(key, "manifest", "fail", "readable manifest and config", str(exc))
            return
        waived: dict[str, str] = unit.expect.get("skip_checks", {})
        platforms = unit.platforms or [unit.platform]
        for platform in platforms:  # every image of a multi-platform index, each held to every check
            shown = platform if len(platforms) > 1 else ""
            try:
                manifest = self.registry.for_platform(repository, index, platform)
                config = self.registry.config_of(repository, manifest)
            except (RegistryError, KeyError, ValueError) as exc:
                yield Finding(key, "manifest", "fail", "readable manifest and config", str(exc), shown)
                continue
            yield Finding(key, "manifest", "pass", "readable manifest and config", manifest.media_type, shown)
            image = UnitImage(key, unit, repository, manifest, config, index, shown,
                              tuple(self.record.aliases), self.record.revision)  # fmt: skip
            for finding in run_checks(CHECKS if platform == platforms[0] else PER_PLATFORM, image, self.reads):
                if finding.check in waived:  # the image's skip_checks, with the reason the catalog gave
                    finding = replace(finding, status="skip", found=f"skipped by policy: {waived[finding.check]}")
                yield finding


def _per_platform(unit: UnitRecord, findings: list[Finding]) -> dict[str, VerifyPlatform]:
    """Each platform of the unit that verify read an image of: its checks' outcome (a single-platform unit's
    findings name no platform: they are its one platform's)."""
    platforms = unit.platforms or [unit.platform]
    out: dict[str, VerifyPlatform] = {}
    for platform in platforms:
        mine = [f for f in findings if (f.platform or unit.platform) == platform]
        if any(f.check == "manifest" and f.status == "pass" for f in mine):
            out[platform] = VerifyPlatform(all(f.status != "fail" for f in mine), _failed(mine))
    return out


def _failed(findings: list[Finding]) -> list[str]:
    return [f.check for f in findings if f.status == "fail"]


@dataclass
class VerifyGate:
    """verify as a gate: every check on every unit and model of the release, read from ``registry``;
    ``trusted``: the keys a signature must be by; ``layer_cache``: layer listings kept between runs."""

    name: ClassVar[GateName] = "verify"
    project: Path
    registry: RegistryClient
    trusted: Sequence[PublicKey] = ()
    layer_cache: Path | None = None

    def policy(self) -> dict[str, Any]:
        return {"checks": [check_name(c) for c in CHECKS]}

    def model_policy(self) -> dict[str, Any] | None:
        return {"checks": list(MODEL_CHECKS)}

    def run(self, record_path: Path, emit: Emit) -> VerifyReport:
        """Run every check and store each unit's and model's verdict in the record."""
        record = load_record(record_path)
        report = Verifier(record, self.registry, emit, self.trusted, self.layer_cache).run()
        for key, unit in record.units.items():
            mine = [f for f in report.findings if f.unit == key]
            unit.verdicts.verify = VerifyVerdict(not _failed(mine), _failed(mine), _per_platform(unit, mine))
        for name, model in record.models.items():
            failed = [f for f in report.findings if f.unit == model_key(name) and f.status == "fail"]
            model.verdicts.verify = ModelVerifyVerdict(not failed, [f"{f.check}: {f.found}" for f in failed])
        write_atomic(record_path, record.to_json())
        return report

    def conclude(self, report: VerifyReport, emit: Emit) -> VerifyReport:
        """The JSON report beside the release's others; raise when any check failed."""
        out = reports_dir(self.project, report.release) / "verify.json"
        write_atomic(out, report.to_json())
        emit(Event("record", f"verify report: {out}", data={"path": str(out)}))
        if not report.passed:
            raise VerifyFailed(
                f"verify: {len(report.failures)} check(s) failed on "
                f"{len({f.unit for f in report.failures})} unit(s) of {report.release}; see {out}"
            )
        return report
