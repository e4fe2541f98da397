"""Trivy's JSON report read into findings, and the gate that decides which of them block a release.

``SEVERITIES`` is defined here once, worst first; every count by severity (the record's, the report's,
the job summary's columns) is read in its order. ``judge`` gives a unit's ``ScanResult`` (every finding,
what blocks, what an allowance let through); its ``verdict`` is what the record stores.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

from ...config.reader import Table, load_document
from ...errors import ConfigError
from ...verdicts import ScanPlatform, ScanVerdict

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
Kind = Literal["vulnerability", "secret", "misconfig"]


@dataclass(frozen=True)
class ScanFinding:
    kind: Kind
    id: str  # CVE id, secret rule id or misconfiguration id
    severity: str
    target: str  # package name, file path or Dockerfile
    installed: str = ""
    fixed: str = ""  # "" when no fix is available
    title: str = ""
    platform: str = ""  # the image's platform (os/arch) it was found in; "" for the Dockerfile's

    @property
    def where(self) -> str:
        """``target`` with the platform it was found in, as the report names it."""
        return f"{self.target} ({self.platform})" if self.platform else self.target

    @property
    def has_fix(self) -> bool:
        return bool(self.fixed)


def image_report_name(platform: str, primary: str, suffix: str = "trivy.json") -> str:
    """The file of a unit's image report for ``platform``: ``image.trivy.json`` for its primary platform (the
    name it always had), ``image.linux-arm64.trivy.json`` for another."""
    return f"image.{suffix}" if platform == primary else f"image.{platform.replace('/', '-')}.{suffix}"


def parse_report(data: dict[str, Any], platform: str = "") -> list[ScanFinding]:
    """Findings of one ``trivy image|config --format json`` report, each naming ``platform`` (an image's
    report; "" for the Dockerfile's). Secret matches are never kept."""
    findings: list[ScanFinding] = []
    for result in data.get("Results") or []:
        target = result.get("Target", "")
        for v in result.get("Vulnerabilities") or []:
            findings.append(
                ScanFinding(
                    "vulnerability",
                    v["VulnerabilityID"],
                    v.get("Severity", "UNKNOWN"),
                    v.get("PkgName", target),
                    v.get("InstalledVersion", ""),
                    v.get("FixedVersion", "") or "",
                    v.get("Title", ""),
                    platform,
                )
            )
        for s in result.get("Secrets") or []:
            findings.append(
                ScanFinding(
                    "secret",
                    s.get("RuleID", "secret"),
                    s.get("Severity", "UNKNOWN"),
                    f"{target}:{s.get('StartLine', '?')}",
                    title=s.get("Title", ""),
                    platform=platform,
                )
            )
        for m in result.get("Misconfigurations") or []:
            if m.get("Status", "FAIL") == "FAIL":
                findings.append(
                    ScanFinding(
                        "misconfig",
                        m.get("ID") or m.get("AVDID", "?"),
                        m.get("Severity", "UNKNOWN"),
                        target,
                        title=m.get("Title", ""),
                        platform=platform,
                    )
                )
    return findings


@dataclass(frozen=True)
class GatePolicy:
    """Severities that block; those in ``only_fixed`` block only when a fix exists.

    Default: every CRITICAL, and HIGH with a fix available (a HIGH nobody can fix yet is
    reported, not blocking). ``ignore_unfixed`` makes every unfixed vulnerability non-blocking.
    """

    severities: frozenset[str] = frozenset({"CRITICAL", "HIGH"})
    only_fixed: frozenset[str] = frozenset({"HIGH"})
    ignore_unfixed: bool = False
    text: str = field(default="CRITICAL,HIGH:fixed", compare=False)  # as written: what a signed verdict states

    @classmethod
    def parse(cls, text: str, *, ignore_unfixed: bool = False) -> GatePolicy:
        """``CRITICAL,HIGH:fixed`` → CRITICAL always, HIGH when fixable."""
        severities, only_fixed = set(), set()
        for item in filter(None, (p.strip().upper() for p in text.split(","))):
            name, _, qualifier = item.partition(":")
            if name not in SEVERITIES or qualifier not in ("", "FIXED"):
                raise ConfigError(
                    f"--severity: {item!r}: expected a list of {', '.join(SEVERITIES)}, "
                    f"each optionally with ':fixed' (e.g. CRITICAL,HIGH:fixed)"
                )
            severities.add(name)
            if qualifier:
                only_fixed.add(name)
        return cls(frozenset(severities), frozenset(only_fixed), ignore_unfixed, text)

    def blocks(self, finding: ScanFinding) -> bool:
        if finding.severity not in self.severities:
            return False
        if finding.kind != "vulnerability":
            return True
        unfixed_allowed = self.ignore_unfixed or finding.severity in self.only_fixed
        return finding.has_fix or not unfixed_allowed


@dataclass(frozen=True)
class AllowEntry:
    id: str
    reason: str
    expires: date
    units: tuple[str, ...] = ("*",)

    def covers(self, unit: str, finding: ScanFinding) -> bool:
        return finding.id == self.id and any(fnmatch.fnmatchcase(unit, pattern) for pattern in self.units)


def load_allowlist(path: Path | None) -> list[AllowEntry]:
    """``[[allow]]`` entries: id, reason and expires are required; units (globs) optional."""
    if path is None:
        return []
    doc = load_document(path, display=str(path))
    doc.only(("allow",))
    raw = doc.data.get("allow", [])
    if not isinstance(raw, list):
        raise doc.error("allow", "expected [[allow]] entries")
    entries = []
    for index, item in enumerate(raw):
        t = Table(item if isinstance(item, dict) else {}, doc.file, f"allow[{index}]")
        t.only(("id", "reason", "expires", "units"))
        entry_id = t.req("id", str, expected='the finding\'s id, e.g. "CVE-2024-0001"')
        why = f"a reason: why {entry_id} is accepted"
        reason = t.req("reason", str, expected=why).strip()
        if not reason:
            raise t.error("reason", f"empty; expected {why}")
        expires = t.data.get("expires")
        if not isinstance(expires, date):
            raise t.error("expires", f"missing or not a date (write expires = 2026-12-31) for {entry_id}")
        entries.append(AllowEntry(entry_id, reason, expires, tuple(t.str_list("units", ["*"]))))
    return entries


@dataclass
class ScanResult:
    """What the scan of one unit found and which of it blocks: the gate's typed result, before the record."""

    unit: str
    findings: list[ScanFinding]
    blocking: list[ScanFinding]
    suppressed: list[tuple[ScanFinding, AllowEntry]]
    expired: list[tuple[ScanFinding, AllowEntry]]
    platforms: list[str] = field(default_factory=list)  # the images scanned, by platform

    @property
    def passed(self) -> bool:
        return not self.blocking

    def counts(self, platform: str | None = None) -> dict[str, int]:
        """By severity: every finding, or (``platform``) those of that platform's image."""
        tally = Counter(f.severity for f in self.findings if platform is None or f.platform == platform)
        return {s: tally.get(s, 0) for s in SEVERITIES}

    def of_platform(self, platform: str) -> ScanPlatform:
        """What the scan of ``platform``'s image found: counts, secrets and what of it blocks."""
        return ScanPlatform(
            self.counts(platform),
            sum(f.kind == "secret" and f.platform == platform for f in self.findings),
            sorted({f.id for f in self.blocking if f.platform == platform}),
        )

    def verdict(self, vulnerabilities: str = "scanned") -> ScanVerdict:
        """The record's verdict; ``vulnerabilities``: "skipped" when only secrets and misconfigurations were."""
        return ScanVerdict(
            passed=self.passed,
            counts=self.counts(),
            secrets=sum(f.kind == "secret" for f in self.findings),
            misconfigs=sum(f.kind == "misconfig" for f in self.findings),
            blocking=sorted({f.id for f in self.blocking}),
            suppressed=sorted({f.id for f, _ in self.suppressed}),
            expired_allowances=sorted({f.id for f, _ in self.expired}),
            platforms={platform: self.of_platform(platform) for platform in self.platforms},
            vulnerabilities=vulnerabilities,
        )


def judge(
    unit: str,
    findings: Iterable[ScanFinding],
    policy: GatePolicy,
    allow: list[AllowEntry],
    today: date,
    platforms: Iterable[str] = (),
) -> ScanResult:
    """``platforms``: the images that were scanned (their findings name them)."""
    findings = list(findings)
    verdict = ScanResult(unit, findings, [], [], [], list(platforms))
    for finding in findings:
        if not policy.blocks(finding):
            continue
        entry = next((e for e in allow if e.covers(unit, finding)), None)
        if entry is None:
            verdict.blocking.append(finding)
        elif entry.expires < today:
            verdict.expired.append((finding, entry))
            verdict.blocking.append(finding)
        else:
            verdict.suppressed.append((finding, entry))
    return verdict


def read_json_report(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable trivy report ({exc})") from None
    return data
