"""The recorded release of tests/data/report/ (2 profiles × 6 images, with verify, scan and canary verdicts,
reports and two channels' ledgers), laid out as a project as shipyard leaves it.

Made from a real integration-test release (tests/integration/conftest.py ``gated``): its record and
verify report, with a size-budget failure, two reused units, Debian and Python CVEs in the trivy reports
(one allow-listed) and a forced promotion to stable added.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shipyard.record import ReleaseRecord, load_record, records_dir, reports_dir, save_record
from shipyard.release.channels.ledger import Entry, Ledger
from shipyard.release.gates.findings import ScanFinding, parse_report

DATA = Path(__file__).parent / "data" / "report"
RELEASE = "20250111-4f2c9a1e"
PREVIOUS, NEXT = "20250110-1a2b3c4d", "20250112-77e0d2b5"


def record() -> ReleaseRecord:
    return load_record(DATA / "record.json")


def verify_document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "verify.json").read_text())
    return data


def trivy_documents() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads((DATA / "trivy.json").read_text())
    return data


def findings() -> dict[str, list[ScanFinding]]:
    return {key: parse_report(doc) for key, doc in trivy_documents().items()}


def ledgers() -> dict[str, Ledger]:
    data = json.loads((DATA / "ledgers.json").read_text())
    return {name: Ledger(name, [Entry(**e) for e in doc["entries"]]) for name, doc in data.items()}


def materialize(root: Path, *, registry: str | None = None) -> ReleaseRecord:
    """Write the record and its reports under ``root/.shipyard`` (the record's registry replaced if given)."""
    rec = record()
    if registry is not None:
        rec.registry = registry
    records_dir(root).mkdir(parents=True, exist_ok=True)
    save_record(root, rec)
    reports = reports_dir(root, rec.release)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "verify.json").write_text((DATA / "verify.json").read_text())
    for key, doc in trivy_documents().items():
        (reports / "scan" / key).mkdir(parents=True, exist_ok=True)
        (reports / "scan" / key / "image.trivy.json").write_text(json.dumps(doc))
    return rec
