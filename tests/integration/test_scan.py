"""scan against the real registry and trivy, with a tiny vulnerability DB served from the local registry."""

from __future__ import annotations

import json
import random
import string
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from shipyard.record import ReleaseRecord, load_record, save_record
from tests.integration.conftest import IT_REGISTRY, installed_source, push_variant, shipyard
from tests.trivydb import Advisory, make_trivy_db

CVE = "CVE-2099-4242"
DB_REF = f"{IT_REGISTRY}/trivy-db:2"
UNITS = ("cpu/base-python", "cpu/affective-processing-center")


@pytest.fixture(scope="module")
def scan_setup(built, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReleaseRecord, dict[str, str]]:  # type: ignore[no-untyped-def]
    root, record, _ = built
    work = tmp_path_factory.mktemp("scan")
    # A DB with a fixed CRITICAL CVE on zlib, whose installed version is really in the base image.
    source, version = installed_source(record.units["cpu/base-python"].ref, "zlib1g")
    make_trivy_db(work / "db", [Advisory(CVE, source, "CRITICAL", f"{version}+deb12u99", "test: zlib overflow")])
    result = shipyard("trivy-db", "push", str(work / "db"), "--to", DB_REF)
    assert f"pushed Trivy DB {work / 'db'} as {DB_REF}@sha256:" in result.stdout
    # An image with a planted (fake, random) GitHub token.
    token = "ghp_" + "".join(random.choices(string.ascii_letters + string.digits, k=36))
    good = record.units["cpu/affective-processing-center"]
    context = work / "leaky"
    context.mkdir()
    (context / "settings.env").write_text(f"GITHUB_TOKEN={token}\n")
    repository = good.repository.replace("/cpu/", "/variants/") + "-leaky"
    digest = push_variant(good.ref, ["COPY settings.env /app/settings.env"], context, f"{repository}:{good.tag}")
    leaky = replace(good, repository=repository, digest=digest, verdicts={})
    units = {key: replace(record.units[key], verdicts={}) for key in UNITS}
    scanned = replace(record, release=record.release + "-scan", units=units)
    save_record(root, scanned)
    leaky_record = replace(record, release=record.release + "-leaky", units={"variants/leaky": leaky})
    save_record(root, leaky_record)
    # an empty trivy cache: the DB can only come from the registry
    env = {"SHIPYARD_CACHE_DIR": str(work / "cache"), "SHIPYARD_TRIVY_DB_REPOSITORY": DB_REF}
    return root, scanned, env


def scan(root: Path, release: str, env: dict[str, str], *extra: str):  # type: ignore[no-untyped-def]
    return shipyard("--project", str(root), "scan", release, *extra, env=env, check=False)


def allowlist(path: Path, expires: date) -> Path:
    path.write_text(
        f'[[allow]]\nid = "{CVE}"\nreason = "zlib inflate is not reachable from our services"\n'
        f"expires = {expires.isoformat()}\n"
    )
    return path


def test_fixed_critical_cve_fails_the_gate(scan_setup) -> None:  # type: ignore[no-untyped-def]
    root, record, env = scan_setup
    result = scan(root, record.release, env)
    assert result.returncode == 11, result.stdout + result.stderr
    assert result.stderr.startswith(f"shipyard: error: scan: 2 unit(s) of {record.release} blocked by {CVE}")
    saved = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    for key in UNITS:
        verdict = saved.units[key].verdicts.scan
        assert verdict is not None
        assert verdict.passed is False and verdict.blocking == [CVE] and verdict.counts["CRITICAL"] == 1
        out = root / ".shipyard" / "reports" / record.release / "scan" / key
        sarif = json.loads((out / "image.sarif").read_text())
        assert CVE in {r["ruleId"] for r in sarif["runs"][0]["results"]}
        sbom = json.loads((out / "sbom.cdx.json").read_text())
        assert sbom["bomFormat"] == "CycloneDX" and any(c["name"] == "zlib1g" for c in sbom["components"])
    assert (root / ".shipyard" / "reports" / record.release / "scan" / UNITS[1] / "dockerfile.trivy.json").is_file()


def test_allowlist_entry_passes_until_it_expires(scan_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, record, env = scan_setup
    valid = allowlist(tmp_path / "ok.toml", date.today() + timedelta(days=30))
    result = scan(root, record.release, env, "--allowlist", str(valid))
    assert result.returncode == 0, result.stdout + result.stderr
    saved = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    allowed = saved.units[UNITS[0]].verdicts.scan
    assert allowed is not None and allowed.suppressed == [CVE]
    expired = allowlist(tmp_path / "old.toml", date.today() - timedelta(days=1))
    result = scan(root, record.release, env, "--allowlist", str(expired))
    assert result.returncode == 11, result.stdout + result.stderr
    saved = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    expired_scan = saved.units[UNITS[0]].verdicts.scan
    assert expired_scan is not None and expired_scan.expired_allowances == [CVE]


def test_planted_token_is_reported_as_a_secret(scan_setup) -> None:  # type: ignore[no-untyped-def]
    root, record, env = scan_setup
    release = record.release.removesuffix("-scan") + "-leaky"
    result = scan(root, release, env, "--severity", "CRITICAL,HIGH")
    assert result.returncode == 11, result.stdout + result.stderr
    saved = load_record(root / ".shipyard" / "releases" / f"{release}.json")
    verdict = saved.units["variants/leaky"].verdicts.scan
    assert verdict is not None and verdict.secrets == 1 and "github-pat" in verdict.blocking
    report = (root / ".shipyard" / "reports" / release / "scan" / "variants/leaky" / "image.trivy.json").read_text()
    assert "ghp_" in report or "GITHUB_TOKEN" in report  # trivy's own report, masked by trivy
    assert "ghp_" not in result.stdout + result.stderr  # shipyard never prints it


def test_no_db_anywhere_fails_with_how_to_mirror(scan_setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, record, env = scan_setup
    result = scan(
        root, record.release, {"SHIPYARD_CACHE_DIR": str(tmp_path)}, "--db-repository", f"{IT_REGISTRY}/no-such-db:2"
    )
    assert result.returncode == 11
    assert result.stderr.startswith("shipyard: error: no Trivy vulnerability DB could be had:")
    assert "shipyard trivy-db push" in result.stderr
