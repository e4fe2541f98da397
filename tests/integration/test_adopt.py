"""A team's own repository, not this repo's catalog: ``shipyard init``, then made the team's own.

From an empty git repository: init, commit, build, verify, canary. Then the team's changes: a second
profile, a custom uid, a plain Dockerfile service built for one profile only that waives a check
with a reason, and a service that gives a ``command`` instead of a Python module. All of it is read
back from the registry and the running containers, not from shipyard's own record.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from shipyard.config.keys import development_key, machine_state_dir
from shipyard.config.registry import parse_registry
from shipyard.oci.attestations import find_sbom, image_platforms, read_sbom
from shipyard.oci.client import RegistryClient
from shipyard.record import ReleaseRecord, load_record, save_record
from shipyard.release.gates.verdicts import attest_gate, signed_verdicts
from tests.conftest import git
from tests.integration.conftest import IT_REGISTRY, installed_source, registry_digest, registry_get, shipyard
from tests.trivydb import Advisory, make_trivy_db

PLAIN_DOCKERFILE = """\
# the team's own Dockerfile: no Jinja; shipyard passes the parent by digest
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
WORKDIR /app
COPY server.py /app/server.py
ENV PORT=8090
EXPOSE 8090
HEALTHCHECK --interval=5s --timeout=2s --start-period=10s --start-interval=1s CMD ["python3", "-c", \
"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8090/healthz', timeout=2)"]
ENTRYPOINT []
CMD ["python3", "/app/server.py"]
# trivy's Dockerfile check (DS-0002) wants the user said here, not only inherited from the base
USER 4242:4243
"""
SERVER = """\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok"} if self.path in ("/health", "/healthz") else {"error": "no"}).encode()
        self.send_response(200 if self.path in ("/health", "/healthz") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = json.dumps({"sum": sum(data["numbers"]), "who": os.environ.get("WHO", "")}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""
TEAM_IMAGES = """
[images.adder]
kind = "service"
description = "the team's plain Dockerfile"
template = "Dockerfile"
context = "services/adder"
parent = "base"
profiles = ["cpu"]
skip_checks = [{check = "tini", reason = "the team's server reaps its own children"}]

[images.adder.service]
port = 8090
health = "/healthz"

[images.adder.service.golden]
path = "/v1/add"
request = {numbers = [1, 2, 3]}
expect = {sum = 6}

[images.summer]
kind = "service"
description = "a service given by its command"
template = "service.Dockerfile.j2"
context = "services/summer"
parent = "base"
build_args = {WHO = "summer"}

[images.summer.service]
port = 8091
health = "/health"
command = ["python3", "/app/server.py"]

[images.summer.service.golden]
path = "/v1/add"
request = {numbers = [2, 2]}
expect = {sum = 4, who = "summer"}
"""


def image_config(repository: str, digest: str) -> dict[str, object]:
    """The linux/amd64 image config behind ``digest`` (an index with its attestations, or a manifest)."""
    manifest = registry_get(repository, f"manifests/{digest}").json()
    for entry in manifest.get("manifests", []):
        if entry.get("platform", {}).get("architecture") == "amd64":  # the primary platform's image
            return image_config(repository, entry["digest"])
    return dict(registry_get(repository, f"blobs/{manifest['config']['digest']}").json()["config"])


def platforms_of(repository: str, reference: str) -> set[str]:
    """The platforms of the images in an index (its attestation manifests, ``unknown/unknown``, left out)."""
    index = registry_get(repository, f"manifests/{reference}").json()
    found = {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index.get("manifests", [])}
    return found - {"unknown/unknown"}


def newest_record(root: Path) -> ReleaseRecord:
    records = sorted((root / ".shipyard" / "releases").glob("*.json"), key=lambda p: p.stat().st_mtime)
    return load_record(records[-1])


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty git repository with init's output committed (its name makes its input digests its own)."""
    root = tmp_path_factory.mktemp("adopt") / f"team-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    init = shipyard("init", str(root))
    assert "created shipyard.toml" in init.stdout and "created .gitignore" in init.stdout, init.stdout
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "shipyard init")
    return root


def test_init_output_builds_verifies_and_passes_the_canary(team: Path) -> None:
    build = shipyard("--project", str(team), "build", env={"SHIPYARD_BASE_OVERRIDE": "local"})
    record = newest_record(team)
    assert set(record.units) == {"cpu/base", "cpu/hello"}, build.stdout
    verify = shipyard("--project", str(team), "verify")
    assert "checks passed on 2 units" in verify.stdout, verify.stdout
    canary = shipyard("--project", str(team), "canary", "--profile", "cpu")
    assert "cpu/hello: ok" in canary.stdout, canary.stdout
    assert git(team, "status", "--porcelain", "--untracked-files=all") == ""


def test_the_teams_own_images_profiles_uid_and_waivers(team: Path) -> None:
    # a second profile (amd64 and arm64 in one index), a custom uid, a plain-Dockerfile service on cpu only,
    # a command service
    edge = (team / "profiles" / "cpu.json").read_text().replace('"OMP_NUM_THREADS": "2"', '"OMP_NUM_THREADS": "1"')
    edge = edge.replace('"platform": "linux/amd64"', '"platforms": ["linux/amd64", "linux/arm64"]')
    assert '"platforms"' in edge
    (team / "profiles" / "edge.json").write_text(edge)
    catalog = (team / "shipyard.toml").read_text()
    catalog = catalog.replace('# [policy]\n# user = "10001:10001"', '[policy]\nuser = "4242:4243"')
    (team / "shipyard.toml").write_text(catalog + TEAM_IMAGES)
    for name in ("adder", "summer"):
        (team / "services" / name).mkdir(parents=True)
        (team / "services" / name / "server.py").write_text(SERVER)
    (team / "services" / "adder" / "Dockerfile").write_text(PLAIN_DOCKERFILE)
    git(team, "add", "-A")
    git(team, "commit", "-q", "-m", "our images", date="2025-01-12T12:00:00+00:00")

    shipyard("--project", str(team), "build", env={"SHIPYARD_BASE_OVERRIDE": "local"})
    record = newest_record(team)
    assert set(record.units) == {
        "cpu/base", "cpu/hello", "cpu/adder", "cpu/summer", "edge/base", "edge/hello", "edge/summer"
    }  # fmt: skip
    for key, unit in record.units.items():  # every unit in the registry, by its tag, running as the policy's user
        assert registry_digest(unit.repository, unit.tag) == unit.digest, key
        assert image_config(unit.repository, unit.digest)["User"] == "4242:4243", key
    for key in ("edge/base", "edge/hello", "edge/summer"):  # one index, an image per platform, both runnable
        unit = record.units[key]
        assert unit.platforms == ["linux/amd64", "linux/arm64"], key
        assert platforms_of(unit.repository, unit.digest) == {"linux/amd64", "linux/arm64"}, key
    summer = record.units["edge/summer"].ref
    machine = subprocess.run(
        ["docker", "run", "--rm", "--platform", "linux/arm64", "--entrypoint", "python3", summer]
        + ["-c", "import os, platform; print(platform.machine(), os.environ['WHO'])"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert machine.stdout.split() == ["aarch64", "summer"], machine.stderr
    adder = record.units["cpu/adder"]
    assert adder.parent == record.units["cpu/base"].parent_ref  # the BASE_IMAGE build arg: its platform manifest

    verify = shipyard("--project", str(team), "verify")  # exits 0: every check passed or was waived
    assert "on 7 units" in verify.stdout, verify.stdout
    report = json.loads((team / ".shipyard" / "reports" / record.release / "verify.json").read_text())
    waived = [f for f in report["findings"] if f["unit"] == "cpu/adder" and f["check"] == "tini"]
    assert waived == [
        {
            "unit": "cpu/adder",
            "check": "tini",
            "status": "skip",
            "expected": "entrypoint starting with tini",
            "found": "skipped by policy: the team's server reaps its own children",
        }
    ]
    canary = shipyard("--project", str(team), "canary", "--profile", "cpu")
    for service in ("hello", "adder", "summer"):
        assert f"cpu/{service}: ok" in canary.stdout, canary.stdout

    # promotion moves the channel to the index itself: every platform of it, nothing pulled or re-pushed
    shipyard("--project", str(team), "scan", "--skip-vulnerabilities")
    channel = f"edge-{uuid.uuid4().hex[:6]}"
    shipyard("--project", str(team), "promote", "--channel", channel, "--profile", "edge")
    for key in ("edge/base", "edge/hello", "edge/summer"):
        unit = record.units[key]
        assert registry_digest(unit.repository, channel) == unit.digest, key
        assert platforms_of(unit.repository, channel) == {"linux/amd64", "linux/arm64"}, key
    assert registry_digest(record.units["cpu/hello"].repository, channel) is None  # edge only


EDGE = ("edge/hello", "edge/summer")
BOTH = ["linux/amd64", "linux/arm64"]


def test_every_platform_of_the_edge_profile_is_gated(team: Path, tmp_path: Path) -> None:
    """The edge units built above (an amd64 and an arm64 image in one index): an SBOM per platform image,
    the scan reads both, the canary runs the arm64 image under QEMU, and a verdict signed over amd64 alone
    does not let the release through."""
    record = newest_record(team)
    path = team / ".shipyard" / "releases" / f"{record.release}.json"
    with RegistryClient(parse_registry(IT_REGISTRY)) as registry:
        for key in ("edge/base", *EDGE):  # each platform's image has its own SBOM, the index none
            unit = record.units[key]
            repository = unit.repository.split("/", 1)[1]
            index = registry.manifest(repository, unit.digest)
            assert index is not None
            manifests = image_platforms(index)
            assert sorted(manifests) == BOTH, key
            assert find_sbom(registry, repository, unit.digest) is None, key
            for platform, manifest in manifests.items():
                sbom = json.loads(read_sbom(registry, repository, manifest).document)
                assert sbom["bomFormat"] == "CycloneDX" and sbom["components"], (key, platform)
            assert unit.attestations["sbom@linux/arm64"] == find_sbom(registry, repository, manifests["linux/arm64"])
    verify = json.loads((team / ".shipyard" / "reports" / record.release / "verify.json").read_text())
    sboms = {f["platform"] for f in verify["findings"] if f["unit"] == "edge/summer" and f["check"] == "sbom"}
    assert sboms == set(BOTH)

    # scan: a DB with a CVE on the zlib both images have; each platform's image is read and named
    source, version = installed_source(record.units["edge/base"].ref, "zlib1g")
    make_trivy_db(tmp_path / "db", [Advisory("CVE-2099-2424", source, "LOW", f"{version}+deb12u99", "test: zlib")])
    db = f"{IT_REGISTRY}/trivy-db-platforms-{uuid.uuid4().hex[:6]}:2"
    shipyard("trivy-db", "push", str(tmp_path / "db"), "--to", db)
    env = {"SHIPYARD_CACHE_DIR": str(tmp_path / "cache"), "SHIPYARD_TRIVY_DB_REPOSITORY": db}
    scan = shipyard("--project", str(team), "scan", record.release, env=env)
    assert "edge/summer: ok" in scan.stdout and "scanned linux/amd64, linux/arm64" in scan.stdout, scan.stdout
    scanned = load_record(path).units["edge/summer"].verdicts.scan
    assert scanned is not None and scanned.platforms is not None and sorted(scanned.platforms) == BOTH
    assert all(scanned.platforms[p].counts["LOW"] >= 1 for p in BOTH), scanned
    reports = team / ".shipyard" / "reports" / record.release / "scan" / "edge/summer"
    for name, platform in (("image.trivy.json", "linux/amd64"), ("image.linux-arm64.trivy.json", "linux/arm64")):
        report = json.loads((reports / name).read_text())
        assert report["Metadata"]["ImageConfig"]["architecture"] == platform.split("/")[1], name
        assert "CVE-2099-2424" in json.dumps(report), name
    shipyard("--project", str(team), "report", record.release)
    page = (team / ".shipyard" / "reports" / record.release / "report.md").read_text()
    assert "(linux/amd64, linux/arm64)" in page, page  # the finding, found in both images

    # canary: amd64 natively, arm64 under QEMU (golden checked, latency not judged)
    canary = shipyard("--project", str(team), "canary", record.release, "--profile", "edge")
    assert "edge/summer: ok" in canary.stdout, canary.stdout
    assert "linux/arm64 emulated ok" in canary.stdout, canary.stdout
    ran = load_record(path).units["edge/summer"].verdicts.canary
    assert ran is not None and ran.platforms is not None
    assert ran.passed and ran.platforms["linux/amd64"].mode == "native"
    arm = ran.platforms["linux/arm64"]
    assert arm.passed and arm.mode == "emulated" and arm.latency.startswith("skipped: emulated (qemu-aarch64)")
    assert arm.requests > 0 and arm.error_rate == 0
    channel = f"edge-{uuid.uuid4().hex[:6]}"
    shipyard("--project", str(team), "promote", record.release, "--channel", channel, "--profile", "edge")
    assert registry_digest(record.units["edge/summer"].repository, channel) == record.units["edge/summer"].digest

    # the same digests under a release whose scan verdict was signed over amd64 only: refused, naming arm64
    gated = load_record(path)
    amd64_only = gated.release + "-amd64only"
    gated.release = amd64_only
    for unit in gated.units.values():
        scan_verdict = unit.verdicts.scan
        assert scan_verdict is not None and scan_verdict.platforms is not None
        scan_verdict.platforms = {p: v for p, v in scan_verdict.platforms.items() if p == "linux/amd64"}
    save_record(team, gated)
    signer = development_key(machine_state_dir())
    with RegistryClient(parse_registry(IT_REGISTRY)) as registry:
        for gate in ("verify", "scan", "canary"):
            attest_gate(registry, signer, gated, gate, {"gate": gate, "by": "a test"}, lambda event: None)
        summer = gated.units["edge/summer"]
        repository = summer.repository.split("/", 1)[1]
        arm64 = image_platforms(registry.manifest(repository, summer.digest))["linux/arm64"]  # type: ignore[arg-type]
        assert set(signed_verdicts(registry, [signer.public], repository, arm64, amd64_only)) == {"verify", "canary"}
    refused = shipyard("--project", str(team), "promote", amd64_only, "--channel", channel + "-x",
                       "--profile", "edge", check=False)  # fmt: skip
    assert refused.returncode != 0, refused.stdout
    assert (
        f"edge/summer: the signed scan verdict of release {amd64_only} for {summer.digest[:19]} does not cover "
        "linux/arm64 (it covers linux/amd64)"
    ) in refused.stderr, refused.stderr
    assert registry_digest(summer.repository, channel + "-x") is None


def test_a_wrong_parent_profile_is_one_line_naming_both_and_builds_nothing(team: Path) -> None:
    catalog = (team / "shipyard.toml").read_text()
    broken = catalog.replace('[images.base]\nkind = "family"', '[images.base]\nkind = "family"\nprofiles = ["cpu"]')
    broken = broken.replace('[images.hello]\nkind = "service"', '[images.hello]\nkind = "service"\nprofiles = ["edge"]')
    assert broken.count("profiles = [") == catalog.count("profiles = [") + 2
    (team / "shipyard.toml").write_text(broken)
    try:
        result = shipyard("--project", str(team), "build", "--allow-dirty", check=False)
    finally:
        (team / "shipyard.toml").write_text(catalog)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "shipyard: error: shipyard.toml: images.hello.profiles: hello is built for edge but its parent base is not "
        "(base.profiles = ['cpu']); add the profile to base or restrict hello to ['cpu']"
    ]
