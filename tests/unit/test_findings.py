from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

import pytest

from shipyard.build.sbom import trivy_binary
from shipyard.errors import ConfigError
from shipyard.release.gates.findings import GatePolicy, ScanFinding, judge, load_allowlist, parse_report

REPORT = {
    "SchemaVersion": 2,
    "ArtifactName": "localhost:5000/acme/cpu/svc@sha256:" + "a" * 64,
    "ArtifactType": "container_image",
    "Results": [
        {
            "Target": "debian 12.11",
            "Class": "os-pkgs",
            "Type": "debian",
            "Vulnerabilities": [
                {
                    "VulnerabilityID": "CVE-2099-0001",
                    "PkgName": "zlib1g",
                    "InstalledVersion": "1:1.2.13.dfsg-1",
                    "FixedVersion": "1:1.2.13.dfsg-9",
                    "Severity": "CRITICAL",
                    "Title": "zlib overflow",
                },
                {
                    "VulnerabilityID": "CVE-2099-0002",
                    "PkgName": "libc6",
                    "InstalledVersion": "2.36-9",
                    "Severity": "CRITICAL",
                    "Status": "affected",
                },
                {
                    "VulnerabilityID": "CVE-2099-0003",
                    "PkgName": "openssl",
                    "InstalledVersion": "3.0.16-1",
                    "Severity": "HIGH",
                    "Status": "affected",
                },
                {
                    "VulnerabilityID": "CVE-2099-0004",
                    "PkgName": "openssl",
                    "InstalledVersion": "3.0.16-1",
                    "FixedVersion": "3.0.17-1",
                    "Severity": "HIGH",
                },
                {
                    "VulnerabilityID": "CVE-2099-0005",
                    "PkgName": "bash",
                    "InstalledVersion": "5.2",
                    "FixedVersion": "5.3",
                    "Severity": "MEDIUM",
                },
            ],
        },
        {
            "Target": "/app/config.env",
            "Class": "secret",
            "Secrets": [
                {
                    "RuleID": "github-pat",
                    "Category": "GitHub",
                    "Severity": "CRITICAL",
                    "Title": "GitHub PAT",
                    "StartLine": 1,
                    "Match": "GITHUB_TOKEN=********",
                }
            ],
        },
    ],
}


def findings() -> list[ScanFinding]:
    return parse_report(REPORT)


def ids(items: list[ScanFinding]) -> list[str]:
    return sorted(f.id for f in items)


def test_parse_keeps_kind_fix_and_no_secret_text() -> None:
    parsed = findings()
    assert [f.kind for f in parsed].count("vulnerability") == 5
    secret = next(f for f in parsed if f.kind == "secret")
    assert secret.target == "/app/config.env:1" and "****" not in repr(secret)
    assert next(f for f in parsed if f.id == "CVE-2099-0001").fixed == "1:1.2.13.dfsg-9"


def test_default_gate_critical_always_high_only_with_fix() -> None:
    verdict = judge("cpu/svc", findings(), GatePolicy(), [], date(2026, 1, 1))
    assert ids(verdict.blocking) == ["CVE-2099-0001", "CVE-2099-0002", "CVE-2099-0004", "github-pat"]
    assert verdict.counts()["CRITICAL"] == 3 and not verdict.passed


def test_ignore_unfixed_and_custom_severities() -> None:
    policy = GatePolicy.parse("critical", ignore_unfixed=True)
    assert ids(judge("u", findings(), policy, [], date(2026, 1, 1)).blocking) == ["CVE-2099-0001", "github-pat"]
    policy = GatePolicy.parse("CRITICAL,HIGH,MEDIUM")
    assert "CVE-2099-0003" in ids(judge("u", findings(), policy, [], date(2026, 1, 1)).blocking)
    with pytest.raises(ConfigError, match=r"^--severity: 'SEVERE'"):
        GatePolicy.parse("SEVERE")


def write_allowlist(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "scan-allowlist.toml"
    path.write_text(body)
    return path


def test_allowlist_suppresses_until_it_expires(tmp_path: Path) -> None:
    path = write_allowlist(
        tmp_path,
        '[[allow]]\nid = "CVE-2099-0001"\nreason = "zlib not reachable"\nexpires = 2026-06-30\nunits = ["cpu/*"]\n',
    )
    allow = load_allowlist(path)
    before = judge("cpu/svc", findings(), GatePolicy.parse("CRITICAL"), allow, date(2026, 6, 30))
    assert "CVE-2099-0001" not in ids(before.blocking) and ids([f for f, _ in before.suppressed]) == ["CVE-2099-0001"]
    other_unit = judge("pc2/svc", findings(), GatePolicy.parse("CRITICAL"), allow, date(2026, 6, 30))
    assert "CVE-2099-0001" in ids(other_unit.blocking)
    after = judge("cpu/svc", findings(), GatePolicy.parse("CRITICAL"), allow, date(2026, 7, 1))
    assert "CVE-2099-0001" in ids(after.blocking) and after.verdict().expired_allowances == ["CVE-2099-0001"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[allow]]\nid = "CVE-1"\nexpires = 2026-01-01\n', r"allow\[0\]\.reason: missing \(required\)"),
        ('[[allow]]\nid = "CVE-1"\nreason = " "\nexpires = 2026-01-01\n', r"allow\[0\]\.reason: empty"),
        ('[[allow]]\nid = "CVE-1"\nreason = "x"\n', r"allow\[0\]\.expires: missing or not a date"),
        ('[[allow]]\nid = "CVE-1"\nreason = "x"\nexpires = 2026-01-01\nreson = 1\n', r"did you mean 'reason'"),
    ],
)
def test_allowlist_errors_name_the_entry(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_allowlist(write_allowlist(tmp_path, body))


def test_sarif_from_trivy_convert_has_rules_and_results(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    report.write_text(json.dumps(REPORT))
    out = tmp_path / "r.sarif"
    subprocess.run(
        [trivy_binary(), "convert", "--quiet", "--format", "sarif", "--output", str(out), str(report)],
        check=True,
        capture_output=True,
    )
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    assert run["tool"]["driver"]["name"] == "Trivy"
    rule_ids = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {"CVE-2099-0001", "github-pat"} <= rule_ids
    assert {r["ruleId"] for r in run["results"]} >= {"CVE-2099-0001", "CVE-2099-0004"}
