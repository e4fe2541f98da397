"""The real trivy binary accepts the DB that tests/trivydb.py writes, and matches Debian advisories by version."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from shipyard.build.sbom import trivy_binary
from tests.integration.conftest import installed_source
from tests.trivydb import Advisory, make_trivy_db

CRITICAL_CVE, OLD_CVE, UNFIXED_CVE = "CVE-2099-0001", "CVE-2099-0002", "CVE-2099-0003"


def test_trivy_reports_advisories_from_the_written_db(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trivy = trivy_binary()
    image = built[1].units["cpu/base-python"].ref
    source, version = installed_source(image, "zlib1g")  # e.g. ("zlib", "1:1.2.13.dfsg-1")
    epoch = version.split(":", 1)[0] + ":" if ":" in version else ""
    fixed = f"{version}+deb12u99"  # a "+" suffix on the revision sorts strictly after it in Debian ordering
    make_trivy_db(
        tmp_path / "cache" / "db",
        [
            Advisory(CRITICAL_CVE, source, "CRITICAL", fixed, "test: fixed in a later revision"),
            Advisory(OLD_CVE, source, "HIGH", f"{epoch}0.1-1", "test: fixed long before the installed version"),
            Advisory(UNFIXED_CVE, "openssl", "MEDIUM", None, "test: affected, no fix yet"),
        ],
    )
    started = time.monotonic()
    result = subprocess.run(
        [trivy, "image", "--cache-dir", str(tmp_path / "cache"), "--skip-db-update", "--skip-java-db-update"]
        + ["--offline-scan", "--scanners", "vuln", "--format", "json", "--quiet", "--insecure", "--image-src"]
        + ["remote", image],
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, f"trivy exited {result.returncode}\n{result.stderr}"
    report = json.loads(result.stdout)
    found = [v for r in report.get("Results") or [] for v in r.get("Vulnerabilities") or []]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for vuln in found:
        by_id.setdefault(vuln["VulnerabilityID"], []).append(vuln)

    assert OLD_CVE not in by_id, f"fixed before {version} but reported: {by_id[OLD_CVE]}"
    critical = by_id.get(CRITICAL_CVE)
    assert critical, f"{CRITICAL_CVE} not reported ({elapsed:.1f}s scan); got {sorted(by_id)}"
    zlib1g = [v for v in critical if v["PkgName"] == "zlib1g"]
    assert len(zlib1g) == 1, critical
    assert zlib1g[0]["InstalledVersion"] == version
    assert zlib1g[0]["FixedVersion"] == fixed
    assert zlib1g[0]["Severity"] == "CRITICAL"
    assert zlib1g[0]["Status"] == "fixed"
    assert {v["Status"] for v in by_id.get(UNFIXED_CVE, [])} == {"affected"}
