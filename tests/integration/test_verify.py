"""verify against the real registry: a good release passes; images that break each check are named."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.config.keys import development_key, machine_state_dir
from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import push_signature
from shipyard.record import ReleaseRecord, load_record, save_record
from tests.integration.conftest import IT_REGISTRY, push_variant, shipyard

GOOD = "cpu/affective-processing-center"
# variant name -> (Dockerfile lines on top of the good image, the check that must fail)
VARIANTS = {
    "root-user": (["USER root"], "user"),
    "no-healthcheck": (["HEALTHCHECK NONE"], "healthcheck"),
    "wrong-revision": (["LABEL org.opencontainers.image.revision=0000000000000000000000000000000000000000"], "labels"),
    "gcc-left": (["COPY --chmod=0755 gcc /usr/bin/gcc"], "no-build-tools"),
    "setuid-tool": (["COPY --chmod=4755 gcc /usr/local/bin/helper"], "no-privilege-tools"),
    "missing-profile-env": (["ENV OMP_NUM_THREADS=64"], "env"),
    "no-tini": (['ENTRYPOINT ["python3"]'], "tini"),
    "over-budget": (["COPY ballast.bin /opt/ballast.bin"], "size"),
}
# variant name -> (which attestation push_variant leaves out, the check that must fail)
UNATTESTED = {
    "no-sbom": ({"provenance": True, "sbom": False}, "sbom"),
    "no-provenance": ({"provenance": False, "sbom": True}, "provenance"),
}


@pytest.fixture(scope="module")
def broken_release(built, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReleaseRecord]:  # type: ignore[no-untyped-def]
    root, record, _ = built
    # as it is now: an earlier test may have rebuilt units of this release (new provenance, new digests)
    record = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    good = record.units[GOOD]
    context = tmp_path_factory.mktemp("variants")
    (context / "gcc").write_text("#!/bin/sh\necho not really gcc\n")
    (context / "ballast.bin").write_bytes(os.urandom(3_000_000))  # random: does not compress
    units = {GOOD: good}
    builds = {name: (lines, {"sbom": True}) for name, (lines, _) in VARIANTS.items()}
    # unique: the registry outlives test runs, and an earlier run may have attached an SBOM to the same digest
    fresh = [f"LABEL io.shipyard.test.run={uuid.uuid4()}"]
    builds |= {name: (fresh, attest) for name, (attest, _) in UNATTESTED.items()}
    for name, (lines, attest) in builds.items():
        repository = good.repository.replace("/cpu/", "/variants/") + "-" + name
        digest = push_variant(good.ref, lines, context, f"{repository}:{good.tag}", **attest)
        expect = dict(good.expect)
        if name == "over-budget":
            expect["size_budget_mb"] = int(good.size / 1_000_000) + 2  # the good image fits, +3 MB does not
        units[f"variants/{name}"] = replace(good, repository=repository, digest=digest, expect=expect, verdicts={})
    broken = replace(record, release=record.release + "-broken", units=units)
    # same tag as the good release, so version/revision labels stay right: only the injected fault differs
    save_record(root, broken)
    with RegistryClient(parse_registry(IT_REGISTRY)) as client:  # signed as a build signs: each breaks one thing
        signer = development_key(machine_state_dir())
        for key in units:
            unit = broken.units[key]
            push_signature(client, unit.repository.split("/", 1)[1], unit.digest, unit.repository, signer)
    return root, broken


def test_good_release_passes(built) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = built
    result = shipyard("--project", str(root), "verify", record.release)
    assert "verify: all" in result.stdout and "checks passed" in result.stdout
    saved = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    assert all(unit.verdicts.verify and unit.verdicts.verify.passed for unit in saved.units.values())


def test_each_broken_image_is_reported_with_its_check(broken_release) -> None:  # type: ignore[no-untyped-def]
    root, record = broken_release
    result = shipyard("--project", str(root), "verify", record.release, check=False)
    assert result.returncode == 10, result.stdout + result.stderr
    assert result.stderr.startswith("shipyard: error: verify: ")
    report = json.loads((root / ".shipyard" / "reports" / record.release / "verify.json").read_text())
    failed = {(f["unit"], f["check"]) for f in report["findings"] if f["status"] == "fail"}
    for name, (_, check) in (VARIANTS | UNATTESTED).items():
        assert (f"variants/{name}", check) in failed, (name, sorted(failed))
        assert f"variants/{name}" in result.stdout  # the table lists every failure, not only the first
    assert not any(unit == GOOD for unit, _ in failed)
    # each variant breaks exactly what it was built to break
    by_unit: dict[str, set[str]] = {}
    for unit, check in failed:
        by_unit.setdefault(unit, set()).add(check)
    assert by_unit["variants/root-user"] == {"user"}
    assert by_unit["variants/gcc-left"] == {"no-build-tools"}
    assert by_unit["variants/no-sbom"] == {"sbom"}
    assert by_unit["variants/no-provenance"] == {"provenance"}
    findings = {(f["unit"], f["check"]): f for f in report["findings"]}
    assert findings[("variants/no-sbom", "sbom")]["found"].startswith("no application/vnd.cyclonedx+json referrer")
    assert findings[("variants/no-provenance", "provenance")]["found"].endswith("not an index with attestations")
    assert findings[(GOOD, "sbom")]["status"] == "pass" and findings[(GOOD, "provenance")]["status"] == "pass"
    saved = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    assert saved.units["variants/no-healthcheck"].verdicts.to_dict()["verify"] == {
        "passed": False,
        "failed": ["healthcheck"],
        "platforms": {"linux/amd64": {"passed": False, "failed": ["healthcheck"]}},  # the platform verify read
    }
    assert saved.units[GOOD].verdicts.verify is not None and saved.units[GOOD].verdicts.verify.passed is True
