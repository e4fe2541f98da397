"""A full build of a small catalog against the real engine and registry, then its containers."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import docker
import httpx
import pytest
import tenacity

from shipyard.build.sbom import trivy_binary
from shipyard.config.catalog import load_catalog
from shipyard.oci.attestations import find_provenance, read_sbom
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import signature_tag
from shipyard.record import load_record
from tests.conftest import git
from tests.integration.conftest import PROFILES, SERVICES, shipyard


def test_every_unit_is_in_the_registry_with_its_digest(built, registry: RegistryClient) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = built
    assert set(record.units) == {
        f"{p}/{i}" for p in PROFILES for i in ("base-python", "family-web", "family-ml", *SERVICES)
    }
    for key, unit in record.units.items():
        repo = f"shipyard-it/{key}"
        assert unit.repository == f"localhost:5000/{repo}"
        assert registry.resolve(repo, record.release) == unit.digest, key
        assert unit.size > 10_000_000
        assert unit.steps > 0


def test_image_config_from_the_registry(built, registry: RegistryClient) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = built
    sha = git(root, "rev-parse", "HEAD")
    profiles = {name: json.loads((root / "profiles" / f"{name}.json").read_text()) for name in PROFILES}
    for key, unit in record.units.items():
        image = registry.image_manifest(f"shipyard-it/{key}", unit.digest, unit.platform)
        assert image is not None, key
        config = registry.config_of(f"shipyard-it/{key}", image)["config"]
        assert config["User"] == "10001:10001", key
        assert config["Healthcheck"]["Test"][0] == "CMD", key
        assert config["Entrypoint"] == ["/usr/bin/tini", "--"], key
        labels = config["Labels"]
        assert labels["org.opencontainers.image.revision"] == sha
        assert labels["org.opencontainers.image.version"] == record.release
        assert labels["io.shipyard.profile"] == unit.profile and labels["io.shipyard.image"] == unit.image
        env = dict(item.split("=", 1) for item in config["Env"])
        for name, value in profiles[unit.profile]["env"].items():
            assert env[name] == value, (key, name)
        for name, value in profiles[unit.profile]["build_args"].items():
            assert env[name] == value, (key, name)
        assert env["PYTHONUNBUFFERED"] == "1"
        if unit.kind == "service":
            assert len(config["ExposedPorts"]) == 1


def test_every_unit_has_provenance_and_an_sbom(built, registry: RegistryClient) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = built
    profiles = {name: json.loads((root / "profiles" / f"{name}.json").read_text()) for name in PROFILES}
    for key, unit in record.units.items():
        repo = f"shipyard-it/{key}"
        index = registry.manifest(repo, unit.digest)
        assert index is not None and index.media_type == "application/vnd.oci.image.index.v1+json", key
        image = registry.for_platform(repo, index, unit.platform)
        provenance = find_provenance(registry, repo, index, image.digest)
        assert provenance.predicate_type.startswith("https://slsa.dev/provenance/"), key
        layer = registry.manifest(repo, provenance.manifest).json["layers"][0]["digest"]  # type: ignore[union-attr]
        predicate = json.loads(registry.blob(repo, layer))["predicate"]
        # mode=max records the build args: exactly the profile's, which shipyard refuses to be secret-like,
        # and SOURCE_DATE_EPOCH, the commit's time
        params = predicate["invocation"]["parameters"]["args"]
        args = {k.removeprefix("build-arg:"): v for k, v in params.items() if k.startswith("build-arg:")}
        epoch = int(datetime.strptime(record.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
        assert args == {**profiles[unit.profile]["build_args"], "SOURCE_DATE_EPOCH": str(epoch)}, key
        sbom = read_sbom(registry, repo, unit.digest)
        names = {c["name"] for c in json.loads(sbom.document)["components"]}
        assert "tini" in names, key  # a Debian package of the base
        if unit.image != "base-python":
            assert "uvicorn" in names, key  # a wheel from the family-web lock, in /opt/venv
        signature = registry.head_digest(repo, signature_tag(unit.digest))  # the build signed the digest
        assert unit.attestations == {
            "provenance": provenance.manifest,
            "sbom": sbom.manifest,
            "signature": signature,
        }, key


def test_another_client_finds_the_sbom_through_the_referrers_tag(built, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, record, _ = built
    unit = record.units["cpu/affective-processing-center"]
    argv = [trivy_binary(), "image", "--sbom-sources", "oci", "--format", "cyclonedx", "--output", str(tmp_path / "o")]
    argv += ["--cache-backend", "memory", "--skip-db-update", "--offline-scan", "--skip-version-check"]
    argv += ["--disable-telemetry", "--image-src", "remote", "--platform", unit.platform, "--insecure", unit.ref]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)  # go-containerregistry's referrers
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Found SBOM in the OCI referrers" in result.stderr, result.stderr[-3000:]


def test_child_is_built_on_its_parent_by_digest(built) -> None:  # type: ignore[no-untyped-def]
    _, record, _ = built
    for _key, unit in record.units.items():
        if unit.image == "family-web":  # the parent's platform manifest, inside the index the record names
            parent = record.units[f"{unit.profile}/base-python"]
            assert unit.parent == parent.parent_ref == f"{parent.repository}@{parent.image_digest}"
        if unit.image == "base-python":
            assert "/shipyard-it/bases/debian-bookworm-python@sha256:" in unit.parent


def test_rebuild_after_prune_comes_from_the_registry_cache(built) -> None:  # type: ignore[no-untyped-def]
    root, first, _ = built
    subprocess.run(["docker", "buildx", "prune", "-af"], check=True, capture_output=True)
    shipyard(
        "--project",
        str(root),
        "build",
        "--profile",
        "cpu",
        "--no-reuse",
        "--jobs",
        "1",
        env={"SHIPYARD_BASE_OVERRIDE": "local"},
    )
    again = load_record(root / ".shipyard" / "releases" / f"{first.release}.json")
    rebuilt = {key: unit for key, unit in again.units.items() if unit.profile == "cpu"}
    assert len(rebuilt) == 6
    for key, unit in rebuilt.items():  # the record keeps the pc2 units of the first build as they were
        assert unit.steps > 0 and unit.cache_hits == unit.steps, f"{key}: {unit.cache_hits}/{unit.steps} cached"


def _run(client: docker.DockerClient, ref: str, port: int, models: dict[str, Path]) -> Iterator[str]:
    """The image run as a deploy runs it: hardened, each of its models mounted read-only at /models/<name>."""
    container = client.containers.run(
        ref,
        detach=True,
        read_only=True,
        volumes={str(path): {"bind": f"/models/{name}", "mode": "ro"} for name, path in models.items()},
        tmpfs={"/tmp": "rw,size=64m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit="512m",
        pids_limit=256,
        ports={f"{port}/tcp": ("127.0.0.1", None)},
        labels={"io.shipyard.test": "e2e"},
    )
    try:
        container.reload()
        host_port = container.ports[f"{port}/tcp"][0]["HostPort"]
        yield f"http://127.0.0.1:{host_port}"
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("service", SERVICES)
def test_service_container_answers_health(built, service: str) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = built
    unit = record.units[f"cpu/{service}"]
    catalog_port = {
        "model-ops-coordinator": 8212,
        "real-time-audio-pipeline": 6557,
        "affective-processing-center": 6560,
    }[service]
    client = docker.from_env()
    try:
        models = {name: root / "models" / name for name in load_catalog(root).images[service].service.models}
        for base_url in _run(client, unit.ref, catalog_port, models):
            for attempt in tenacity.Retrying(
                stop=tenacity.stop_after_delay(60),
                wait=tenacity.wait_fixed(0.2),
                retry=tenacity.retry_if_exception_type(httpx.TransportError),
                reraise=True,
            ):
                with attempt:
                    response = httpx.get(f"{base_url}/health", timeout=2)
            assert response.status_code == 200
            body = response.json()
            assert body["status"] == "ok" and body["service"] == service and body["profile"] == "cpu"
    finally:
        client.close()
