from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx
import pytest
import tenacity

from shipyard.build.sbom import SbomGenerator
from shipyard.config.keys import development_key, machine_state_dir
from shipyard.config.registry import parse_registry
from shipyard.oci.attestations import push_sbom
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import push_signature
from shipyard.oci.reference import RegistryNamespace
from shipyard.record import ReleaseRecord, load_record
from shipyard.release.gates.verdicts import attest_gate, attest_models
from shipyard.runner import Runner
from tests.conftest import git, make_project

IT_REGISTRY = "localhost:5000/shipyard-it"
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def registry_get(repository: str, path: str) -> httpx.Response:
    """``GET /v2/<repository path>/<path>`` of the registry ``repository`` (host/path, as records name it)
    is in: what the registry itself answers, not what shipyard says of it."""
    host, _, name = repository.partition("/")
    return httpx.get(f"http://{host}/v2/{name}/{path}", headers={"Accept": MANIFEST_TYPES}, timeout=30)


def registry_digest(repository: str, reference: str) -> str | None:
    """What ``<repository>:<reference>`` names in the registry; None when it has no such tag."""
    response = registry_get(repository, f"manifests/{reference}")
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.integration)


def shipyard(*args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess, as a release engineer runs it."""
    full_env = {**os.environ, "SHIPYARD_REGISTRY": IT_REGISTRY, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", *args], env=full_env, capture_output=True, text=True, timeout=1800
    )
    if check and result.returncode != 0:
        raise AssertionError(f"shipyard {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def installed_source(image: str, binary_package: str) -> tuple[str, str]:
    out = subprocess.run(
        ["docker", "run", "--rm", "--user", "0", "--entrypoint", "dpkg-query", image]
        + ["-W", "-f", "${source:Package} ${source:Version}", binary_package],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.split()
    return out[0], out[1]


def push_variant(
    base_ref: str, lines: list[str], context: Path, ref: str, *, provenance: bool = True, sbom: bool = False
) -> str:
    """Build ``FROM base_ref`` plus ``lines`` in ``context``, push it as ``ref``, return its digest.

    With buildx provenance as shipyard builds; ``sbom`` also attaches the SBOM shipyard's build attaches.
    """
    (context / "Dockerfile").write_text("\n".join([f"FROM {base_ref}", *lines]) + "\n")
    metadata = context / "metadata.json"
    argv = ["docker", "buildx", "build", f"--provenance={'mode=max' if provenance else 'false'}", "--push"]
    argv += ["--tag", ref]
    result = subprocess.run([*argv, "--metadata-file", str(metadata), str(context)], capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    digest = str(json.loads(metadata.read_text())["containerimage.digest"])
    if sbom:
        attach_sbom(ref.rsplit(":", 1)[0], digest)
    return digest


def attach_sbom(repository_ref: str, digest: str) -> None:
    """What ``shipyard build`` does after a push (build/attach.py), for an image a test pushed itself."""
    repository = repository_ref.split("/", 1)[1]
    document = SbomGenerator(Runner(), insecure=True).generate(f"{repository_ref}@{digest}", "linux/amd64")
    with RegistryClient(parse_registry(IT_REGISTRY)) as registry:
        index = registry.manifest(repository, digest)
        assert index is not None
        push_sbom(registry, repository, index, document, {})


def isolated(root: Path) -> Path:
    """Give the project a commit and input digests of its own (a run id in the catalog's source label).

    An image with buildx provenance gets a new digest on every build (the attestation records when and
    under which tag it was built), so two test sessions building the same commit would move each other's
    release and ``inputs-`` tags. The label comes last in the Dockerfiles: the build cache is still shared.
    """
    catalog = root / "shipyard.toml"
    text, count = re.subn(
        r'(?m)^source = "([^"]*)"$', rf'source = "\1#run-{uuid.uuid4().hex[:12]}"', catalog.read_text()
    )
    assert count == 1, "the catalog has no [project] source to make unique"
    catalog.write_text(text)
    git(root, "commit", "-qam", "this test session's own project")
    return root


def sign_as_gated(record: ReleaseRecord, *keys: str) -> None:
    """What build, verify, scan and canary attach to a unit that passed them, for images a test pushed
    itself (push_variant): the signature and the signed verdicts, by this machine's development key,
    from the verdicts the test wrote into the record."""
    signer = development_key(machine_state_dir())
    with RegistryClient(parse_registry(IT_REGISTRY)) as registry:
        for key in keys:
            unit = record.units[key]
            push_signature(registry, unit.repository.split("/", 1)[1], unit.digest, unit.repository, signer)
        # the gates run on the whole release: every unit (and model) gets a verdict made for this release
        for gate in ("verify", "scan", "canary"):
            attest_gate(registry, signer, record, gate, {"gate": gate, "by": "a test"}, lambda event: None)
        attest_models(registry, signer, record, "verify", {"gate": "verify", "by": "a test"}, lambda event: None)


def copy_project(source: Path, root: Path) -> Path:
    """The project's files and release records at ``root``, without its git history or other state: a
    catalog a test may add to (deploy targets) while the session's project stays as it is."""
    shutil.copytree(source, root, ignore=shutil.ignore_patterns(".git", ".shipyard"))
    shutil.copytree(source / ".shipyard" / "releases", root / ".shipyard" / "releases")
    return root


SERVICES = ("model-ops-coordinator", "real-time-audio-pipeline", "affective-processing-center")
PROFILES = ("cpu", "pc2")  # pc2 on the local base: the GPU profile's env and build args still apply


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReleaseRecord, str]:
    root = isolated(make_project(tmp_path_factory.mktemp("e2e") / "proj", services=SERVICES, profiles=PROFILES))
    # --jobs 1: step counts are asserted, and BuildKit shares identical steps of concurrent builds
    result = shipyard(
        "--project", str(root), "build", "--no-reuse", "--jobs", "1", env={"SHIPYARD_BASE_OVERRIDE": "local"}
    )
    sha = git(root, "rev-parse", "HEAD")
    release = f"20250111-{sha[:8]}"
    assert f"units pushed as {release}" in result.stdout, result.stdout
    return root, load_record(root / ".shipyard" / "releases" / f"{release}.json"), result.stdout


@pytest.fixture(scope="session")
def it_target() -> RegistryNamespace:
    return parse_registry(IT_REGISTRY)


@pytest.fixture(scope="session")
def registry(it_target: RegistryNamespace) -> Iterator[RegistryClient]:
    client = RegistryClient(it_target)
    try:
        client.ping()
    except Exception as exc:  # pragma: no cover - a broken machine, not a test outcome
        pytest.fail(f"local registry not reachable ({exc}); run `nox -s up` first")
    yield client
    client.close()


@pytest.fixture(scope="session")
def gated(built) -> tuple[Path, ReleaseRecord]:  # type: ignore[no-untyped-def]
    """The e2e release, cpu units only, with real verify, scan and canary verdicts."""
    root, record, _ = built
    shipyard("--project", str(root), "verify", record.release)
    shipyard("--project", str(root), "scan", record.release, "--skip-vulnerabilities")
    shipyard("--project", str(root), "canary", record.release, "--profile", "cpu")
    return root, load_record(root / ".shipyard" / "releases" / f"{record.release}.json")


@contextlib.contextmanager
def htpasswd_registry(work: Path, port: int, user: str, password: str) -> Iterator[str]:
    """A second real registry on 127.0.0.1:``port`` that wants ``user``/``password`` (htpasswd);
    yields its ``localhost:port`` host, stopped on the way out."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "htpasswd").write_bytes(user.encode() + b":" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(5)) + b"\n")
    (work / "config.yml").write_text(
        f"version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {work / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
        f"auth: {{htpasswd: {{realm: shipyard-test, path: {work / 'htpasswd'}}}}}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(work / "config.yml")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for attempt in tenacity.Retrying(
            stop=tenacity.stop_after_delay(20), wait=tenacity.wait_fixed(0.1), reraise=True
        ):
            with attempt:
                assert proc.poll() is None, f"docker-registry exited {proc.returncode} (port {port} taken?)"
                assert httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 401
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
