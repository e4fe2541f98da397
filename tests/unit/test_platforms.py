"""Every platform of a multi-platform unit gated, not only the first: SBOMs, scan, canary, verdicts, trust, report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shipyard.build.attach import Attacher, Pushed
from shipyard.oci.attestations import find_sbom, image_platforms, read_sbom
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import attestation_tag, push_attestation, push_signature
from shipyard.oci.signing import SigningKey
from shipyard.record import ReleaseRecord, UnitRecord
from shipyard.release.channels.trust import digest_problems, trust_problems
from shipyard.release.engine import Endpoint
from shipyard.release.gates import canary
from shipyard.release.gates.canary import Candidate, Engine, HowToRun, canary_platforms, how_to_run
from shipyard.release.gates.checks import PER_PLATFORM, Reads, UnitImage, check_sbom
from shipyard.release.gates.findings import GatePolicy, image_report_name, judge, parse_report
from shipyard.release.gates.scan import ScanOptions, scan_unit
from shipyard.release.gates.verdicts import Artifact, attest_gate, signed_verdicts, statement, subject_statement
from shipyard.report.text import gate_platforms, platforms_text
from shipyard.verdicts import CanaryVerdict, ScanPlatform
from tests.attested import CYCLONEDX, IMAGE_TYPE, push_platforms
from tests.memregistry import MemoryRegistry

REPO = "acme/edge/svc"
BOTH = ["linux/amd64", "linux/arm64"]
KEY = SigningKey.generate()
RELEASE = "20250111-aaaaaaaa"


def image(arch: str) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": IMAGE_TYPE, "config": {"arch": arch}, "layers": []}).encode()


def two_platforms(mem: MemoryRegistry) -> tuple[str, dict[str, str]]:
    return push_platforms(mem, REPO, [RELEASE], {"linux/amd64": image("amd64"), "linux/arm64": image("arm64")})


def edge_unit(digest: str, verdicts: dict[str, Any] | None = None) -> UnitRecord:
    return UnitRecord(
        profile="edge", image="svc", kind="service", platform="linux/amd64", repository=f"localhost:5000/{REPO}",
        tag=RELEASE, digest=digest, size=1, parent="p@sha256:x", duration_s=0, steps=1, cache_hits=0,
        verdicts=dict(verdicts or {}), platforms=list(BOTH),
    )  # fmt: skip


def edge_record(unit: UnitRecord) -> ReleaseRecord:
    record = ReleaseRecord(RELEASE, "a" * 40, "2025-01-11T00:00:00Z", "localhost:5000/acme")
    record.units["edge/svc"] = unit
    return record


# --- SBOM per platform ------------------------------------------------------------------------------


def test_each_platform_manifest_gets_its_own_sbom_made_for_its_platform(
    mem: MemoryRegistry, registry: RegistryClient
) -> None:
    digest, manifests = two_platforms(mem)
    asked: list[str] = []

    def generate(ref: str, platform: str) -> bytes:
        asked.append(platform)
        return CYCLONEDX.replace(b'"pip"', f'"pip-{platform.rsplit("/", 1)[1]}"'.encode())

    attacher = Attacher(registry, generate, lambda event: None, jobs=1)
    attacher.submit(Pushed("edge/svc", REPO, f"localhost:5000/{REPO}@{digest}", digest, "linux/amd64"))
    done, failed = attacher.wait()
    assert failed == {} and asked == BOTH
    assert find_sbom(registry, REPO, digest) is None  # the index has none: each image has its own
    for platform, manifest in manifests.items():
        sbom = read_sbom(registry, REPO, manifest)  # refers to that platform's manifest
        assert f"pip-{platform.rsplit('/', 1)[1]}".encode() in sbom.document
    assert done["edge/svc"]["sbom"] == find_sbom(registry, REPO, manifests["linux/amd64"])
    assert done["edge/svc"]["sbom@linux/arm64"] == find_sbom(registry, REPO, manifests["linux/arm64"])
    assert set(done["edge/svc"]) == {"provenance", "sbom", "provenance@linux/arm64", "sbom@linux/arm64"}


def test_verify_checks_each_platforms_own_sbom(mem: MemoryRegistry, registry: RegistryClient) -> None:
    digest, manifests = two_platforms(mem)
    assert check_sbom in PER_PLATFORM
    only_amd64 = Attacher(registry, lambda ref, platform: CYCLONEDX, lambda event: None, jobs=1)
    only_amd64.submit(Pushed("edge/svc", REPO, f"localhost:5000/{REPO}@{digest}", digest, "linux/amd64"))
    only_amd64.wait()
    index = registry.manifest(REPO, digest)
    assert index is not None
    # the arm64 SBOM removed: the referrers tag of the arm64 manifest gone, as for an image never read for arm64
    del mem.tags[(REPO, "sha256-" + manifests["linux/arm64"].removeprefix("sha256:"))]
    found = {}
    for platform in BOTH:
        one = UnitImage("edge/svc", edge_unit(digest), REPO, registry.for_platform(REPO, index, platform), {}, index,
                        platform)  # fmt: skip
        (found[platform],) = check_sbom(one, Reads.of(registry, "localhost:5000"))
    assert found["linux/amd64"].status == "pass" and found["linux/amd64"].platform == "linux/amd64"
    assert found["linux/arm64"].status == "fail" and found["linux/arm64"].platform == "linux/arm64"
    assert "of the linux/arm64 image" in found["linux/arm64"].expected


# --- scan per platform ------------------------------------------------------------------------------


def trivy_report(cve: str) -> dict[str, Any]:
    vuln = {"VulnerabilityID": cve, "Severity": "CRITICAL", "PkgName": "openssl", "InstalledVersion": "1"}
    return {"Results": [{"Target": "debian", "Vulnerabilities": [vuln]}]}


class FakeTrivy:
    """Trivy's image reports written as trivy writes them: a CVE of its own per platform."""

    def __init__(self) -> None:
        self.options = ScanOptions(policy=GatePolicy())
        self.scanned: list[tuple[str, str]] = []

    def scan_image(self, ref: str, platform: str, cache: Path, out: Path, *, insecure: bool) -> None:
        self.scanned.append((ref, platform))
        out.write_text(json.dumps(trivy_report("CVE-ARM" if platform == "linux/arm64" else "CVE-AMD")))

    def convert(self, report: Path, fmt: str, out: Path) -> None:
        out.write_text("{}")


def test_every_platform_is_scanned_and_findings_name_it(tmp_path: Path) -> None:
    unit = edge_unit("sha256:" + "1" * 64)
    trivy = FakeTrivy()
    verdict = scan_unit(trivy, tmp_path, edge_record(unit), "edge/svc", unit, tmp_path, True)  # type: ignore[arg-type]
    assert [p for _, p in trivy.scanned] == BOTH and all(ref == unit.ref for ref, _ in trivy.scanned)
    assert {(f.id, f.platform) for f in verdict.findings} == {("CVE-AMD", "linux/amd64"), ("CVE-ARM", "linux/arm64")}
    recorded = verdict.verdict()
    assert recorded.platforms is not None and recorded.platforms["linux/arm64"] == ScanPlatform(
        counts={"CRITICAL": 1, "HIGH": 0, "MEDIUM": 0, "LOW": 0, "UNKNOWN": 0}, secrets=0, blocking=["CVE-ARM"]
    )
    assert recorded.to_dict()["platforms"]["linux/arm64"] == {  # the record's JSON, as it always was
        "counts": {"CRITICAL": 1, "HIGH": 0, "MEDIUM": 0, "LOW": 0, "UNKNOWN": 0}, "secrets": 0,
        "blocking": ["CVE-ARM"],
    }  # fmt: skip
    assert recorded.counts["CRITICAL"] == 2 and recorded.blocking == ["CVE-AMD", "CVE-ARM"]
    out = tmp_path / ".shipyard" / "reports" / RELEASE / "scan" / "edge/svc"
    assert (out / "image.trivy.json").is_file() and (out / "image.linux-arm64.trivy.json").is_file()
    assert (out / "sbom.linux-arm64.cdx.json").is_file()


def test_a_single_platform_report_keeps_its_names() -> None:
    assert image_report_name("linux/amd64", "linux/amd64") == "image.trivy.json"
    assert image_report_name("linux/arm64", "linux/amd64", "sarif") == "image.linux-arm64.sarif"
    verdict = judge("cpu/x", parse_report(trivy_report("CVE-1"), "linux/amd64"), GatePolicy(), [], date_today())
    assert verdict.verdict().platforms == {}  # platforms: as scan_unit names them


def date_today() -> Any:
    from datetime import date

    return date(2025, 1, 11)


# --- canary: how each platform runs -----------------------------------------------------------------


def binfmt(tmp_path: Path, entries: dict[str, str]) -> Path:
    for name, content in entries.items():
        (tmp_path / name).write_text(content)
    return tmp_path


def test_native_emulated_and_unrunnable_platforms(tmp_path: Path) -> None:
    registered = binfmt(tmp_path, {"qemu-aarch64": "enabled\ninterpreter /usr/bin/qemu-aarch64\n",
                                   "qemu-s390x": "disabled\n"})  # fmt: skip
    assert how_to_run("linux/amd64", "x86_64", local=True, binfmt=registered) == HowToRun("linux/amd64", "native")
    assert how_to_run("linux/arm64", "x86_64", local=True, binfmt=registered) == HowToRun(
        "linux/arm64", "emulated", emulator="qemu-aarch64"
    )
    assert how_to_run("linux/arm64", "aarch64", local=True, binfmt=tmp_path / "none").mode == "native"
    disabled = how_to_run("linux/s390x", "x86_64", local=True, binfmt=registered)
    assert disabled.mode == "" and disabled.reason.endswith("qemu-s390x is disabled")
    missing = how_to_run("linux/arm64", "x86_64", local=True, binfmt=tmp_path / "none")
    assert missing.mode == "" and f"no {tmp_path / 'none' / 'qemu-aarch64'}" in missing.reason
    remote = how_to_run("linux/arm64", "x86_64", local=False, binfmt=registered)
    assert remote.mode == "" and "on another machine" in remote.reason


def test_a_platform_the_engine_cannot_run_is_recorded_as_not_canaried(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[HowToRun | None] = []

    def fake_unit(engine: Engine, candidate: Candidate, **kw: Any) -> CanaryVerdict:
        ran.append(kw["run"])
        return CanaryVerdict(True, ready_s=1.0, p95_ms=5.0, platform=kw["run"].platform, mode=kw["run"].mode)

    monkeypatch.setattr(canary, "canary_unit", fake_unit)
    unit = edge_unit("sha256:" + "1" * 64)
    runs = {"linux/amd64": HowToRun("linux/amd64", "native"), "linux/arm64": HowToRun("linux/arm64", "", "no qemu")}
    engine = Engine(None, Endpoint("unix:///var/run/docker.sock", "", "127.0.0.1", "127.0.0.1"))
    candidate = Candidate("edge/svc", unit, RELEASE)
    verdict = canary_platforms(engine, candidate, runs.__getitem__)
    assert verdict.passed and [r.platform for r in ran if r] == ["linux/amd64"]
    assert verdict.platforms is not None
    assert verdict.platforms["linux/arm64"].to_dict() == {"canaried": False, "reason": "no qemu"}
    assert verdict.platforms["linux/amd64"].canaried and verdict.platforms["linux/amd64"].mode == "native"
    nothing = canary_platforms(engine, candidate, lambda p: HowToRun(p, "", "no way"))
    assert not nothing.passed and nothing.reason.startswith("no platform of the unit can run here")


# --- verdicts and trust -----------------------------------------------------------------------------


PER_PLATFORM_VERDICTS = {
    "verify": {"passed": True, "failed": [], "platforms": {p: {"passed": True, "failed": []} for p in BOTH}},
    "scan": {"passed": True, "platforms": {p: {"counts": {}} for p in BOTH}},
    "canary": {"passed": True, "platforms": {"linux/amd64": {"canaried": True, "passed": True, "mode": "native"},
                                             "linux/arm64": {"canaried": True, "passed": True, "mode": "emulated"}}},
}  # fmt: skip


def gated(
    mem: MemoryRegistry, registry: RegistryClient, verdicts: dict[str, Any]
) -> tuple[ReleaseRecord, dict[str, str]]:
    digest, manifests = two_platforms(mem)
    record = edge_record(edge_unit(digest, verdicts))
    push_signature(registry, REPO, digest, f"localhost:5000/{REPO}", KEY)
    for gate in ("verify", "scan", "canary"):
        attest_gate(registry, KEY, record, gate, {"gate": gate}, lambda event: None)
    return record, manifests


def test_a_verdict_names_every_platform_manifest_and_is_attached_under_each(
    mem: MemoryRegistry, registry: RegistryClient
) -> None:
    record, manifests = gated(mem, registry, PER_PLATFORM_VERDICTS)
    unit = record.units["edge/svc"]
    claim = statement(record, "edge/svc", "scan", {}, manifests)
    subjects = ["sha256:" + s["digest"]["sha256"] for s in claim["subject"]]
    assert subjects == [unit.digest, manifests["linux/amd64"], manifests["linux/arm64"]]
    assert claim["predicate"]["shipyard"]["platforms"] == manifests
    for at in (unit.digest, *manifests.values()):
        assert (REPO, attestation_tag(at)) in mem.tags, at
        assert set(signed_verdicts(registry, [KEY.public], REPO, at, RELEASE)) == {"verify", "scan", "canary"}
    assert trust_problems(registry, [KEY.public], record, ["edge/svc"]) == []
    assert digest_problems(registry, [KEY.public], "edge/svc", REPO, unit.digest) == []
    # the models' statements stay as they were: no platforms
    model = subject_statement(record, Artifact("models/m", "r", unit.digest), "verify", {}, {})
    assert "platforms" not in model["predicate"]["shipyard"]


def test_promotion_is_refused_naming_the_platform_a_verdict_does_not_cover(
    mem: MemoryRegistry, registry: RegistryClient
) -> None:
    amd64_only = {p: {"counts": {}} for p in BOTH[:1]}
    canary_amd64 = {"linux/amd64": {"canaried": True, "passed": True},
                    "linux/arm64": {"canaried": False, "reason": "no qemu"}}  # fmt: skip
    verdicts = {**PER_PLATFORM_VERDICTS, "scan": {"passed": True, "platforms": amd64_only},
                "canary": {"passed": True, "platforms": canary_amd64}}  # fmt: skip
    record, manifests = gated(mem, registry, verdicts)
    short = record.units["edge/svc"].digest[:19]
    assert trust_problems(registry, [KEY.public], record, ["edge/svc"]) == [
        f"edge/svc: the signed scan verdict of release {RELEASE} for {short} does not cover linux/arm64 "
        "(it covers linux/amd64)",
        f"edge/svc: the signed canary verdict of release {RELEASE} for {short} does not cover linux/arm64 "
        "(it covers linux/amd64)",
    ]
    assert set(signed_verdicts(registry, [KEY.public], REPO, manifests["linux/arm64"], RELEASE)) == {"verify"}
    assert digest_problems(registry, [KEY.public], "edge/svc", REPO, record.units["edge/svc"].digest) == [
        f"edge/svc: the signed scan verdict for {short} does not cover linux/arm64"
    ]


def test_a_verdict_without_platforms_covers_the_primary_platform_only(
    mem: MemoryRegistry, registry: RegistryClient
) -> None:
    record, _ = gated(mem, registry, PER_PLATFORM_VERDICTS)
    unit = record.units["edge/svc"]
    old = subject_statement(record, Artifact("edge/svc", unit.repository, unit.digest), "scan", {}, {"passed": True})
    push_attestation(registry, REPO, unit.digest, old, KEY, label=f"scan@{RELEASE}")  # as shipyard wrote them
    problems = trust_problems(registry, [KEY.public], record, ["edge/svc"])
    assert problems == [
        f"edge/svc: the signed scan verdict of release {RELEASE} for {unit.digest[:19]} does not cover linux/arm64 "
        "(it covers linux/amd64)"
    ]
    single = edge_unit(unit.digest, PER_PLATFORM_VERDICTS)
    single.platforms = []  # a single-platform unit: that old verdict covers its one platform
    assert trust_problems(registry, [KEY.public], edge_record(single), ["edge/svc"]) == []


def test_the_index_lists_its_images_without_the_attestation_manifests(
    mem: MemoryRegistry, registry: RegistryClient
) -> None:
    digest, manifests = two_platforms(mem)
    index = registry.manifest(REPO, digest)
    assert index is not None and image_platforms(index) == manifests


# --- report -----------------------------------------------------------------------------------------


def test_the_report_shows_each_units_platforms_and_what_each_gate_covered() -> None:
    verdicts = {**PER_PLATFORM_VERDICTS, "canary": {"passed": True, "platforms": {
        "linux/amd64": {"canaried": True, "passed": True, "mode": "native"},
        "linux/arm64": {"canaried": False, "reason": "no qemu-aarch64"}}}}  # fmt: skip
    unit = edge_unit("sha256:" + "1" * 64, verdicts)
    assert gate_platforms(unit) == [
        ("verify", "all"), ("scan", "all"), ("canary", "linux/amd64; not linux/arm64 (no qemu-aarch64)")
    ]  # fmt: skip
    assert platforms_text(unit).startswith("linux/amd64, linux/arm64: verify all, scan all, canary linux/amd64;")
    emulated = edge_unit(unit.digest, PER_PLATFORM_VERDICTS)
    assert dict(gate_platforms(emulated))["canary"] == "all (linux/arm64 emulated, latency not judged)"
    old = edge_unit(unit.digest, {"scan": {"passed": True}})
    assert gate_platforms(old) == [("scan", "linux/amd64 only (an older shipyard's verdict)")]
    single = edge_unit(unit.digest, {"verify": {"passed": True}})
    single.platforms = []
    assert platforms_text(single) == "linux/amd64: verify linux/amd64"
