"""shipyard's signatures and attestations against the real cosign binary and the local registry, both ways.

Each test pushes its own one-layer OCI image (no engine, no build) to a repository of this session
under ``localhost:5000/shipyard-it-cosign/``. cosign runs offline: keys, no transparency log.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import secrets
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shipyard.config.registry import parse_registry
from shipyard.oci import cosign
from shipyard.oci.artifacts import MANIFEST_TYPE
from shipyard.oci.client import RegistryClient
from shipyard.oci.signing import PublicKey, SigningKey
from tests.attested import in_toto_statement

HOST = "localhost:5000"
VSA = "https://slsa.dev/verification_summary/v1"
REGISTRY_FLAGS = ("--allow-insecure-registry", "--allow-http-registry")
PREDICATE = {
    "verifier": {"id": "https://shipyard.example/verify"},
    "timeVerified": "2025-01-11T00:00:00Z",
    "resourceUri": "localhost:5000/shipyard-it-cosign/x",
    "policy": {"uri": "https://shipyard.example/policy"},
    "verificationResult": "PASSED",
    "verifiedLevels": ["SLSA_BUILD_LEVEL_1"],
}


@dataclass(frozen=True)
class CosignKeys:
    """A key pair ``cosign generate-key-pair`` wrote; the password goes to cosign's env, never to a repr."""

    private: Path
    public: Path
    password: str = field(repr=False)


@pytest.fixture(scope="session")
def cosign_binary() -> str:
    binary = shutil.which("cosign")
    if binary is None:
        pytest.fail("cosign is not installed: run scripts/up.sh (as root on Debian it installs it)")
    return binary


def run_cosign(
    binary: str, *args: str, password: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COSIGN_PASSWORD": password} if password is not None else dict(os.environ)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{' '.join(result.args[:2])} exited {result.returncode}:\n{result.stderr[-2000:]}"
    return result


@pytest.fixture(scope="session")
def cosign_keys(cosign_binary: str, tmp_path_factory: pytest.TempPathFactory) -> CosignKeys:
    where = tmp_path_factory.mktemp("cosign-keys")
    password = secrets.token_urlsafe(18)
    ok(run_cosign(cosign_binary, "generate-key-pair", password=password, cwd=where))
    return CosignKeys(where / "cosign.key", where / "cosign.pub", password)


@pytest.fixture(scope="session")
def repository() -> str:
    return f"shipyard-it-cosign/{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def client() -> Iterator[RegistryClient]:
    with RegistryClient(parse_registry(f"{HOST}/shipyard-it-cosign")) as registry:
        try:
            registry.ping()
        except Exception as exc:  # pragma: no cover - a broken machine, not a test outcome
            pytest.fail(f"local registry not reachable ({exc}); run `nox -s up` first")
        yield registry


@dataclass(frozen=True)
class ShipyardKey:
    key: SigningKey
    pem: Path

    @property
    def public(self) -> PublicKey:
        return self.key.public


@pytest.fixture(scope="session")
def shipyard_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[ShipyardKey, ShipyardKey]:
    where = tmp_path_factory.mktemp("shipyard-keys")
    made = []
    for name in ("signer", "stranger"):
        key = SigningKey.generate()
        (where / f"{name}.pub").write_bytes(key.public.pem())
        made.append(ShipyardKey(key, where / f"{name}.pub"))
    return made[0], made[1]


def push_tiny_image(registry: RegistryClient, repository: str) -> str:
    """A one-layer linux/amd64 OCI image with content of its own; its manifest digest."""
    content = f"hello from {uuid.uuid4()}\n".encode()
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as archive:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        archive.addfile(info, io.BytesIO(content))
    layer = gzip.compress(tar.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()]},
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": registry.upload_blob(repository, config),
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": registry.upload_blob(repository, layer),
                "size": len(layer),
            }
        ],
    }
    return registry.put_manifest(repository, f"t-{uuid.uuid4().hex[:8]}", json.dumps(manifest).encode(), MANIFEST_TYPE)


def verify(binary: str, public: Path, ref: str) -> subprocess.CompletedProcess[str]:
    return run_cosign(binary, "verify", "--key", str(public), "--insecure-ignore-tlog=true", *REGISTRY_FLAGS, ref)


def verify_attestation(
    binary: str, public: Path, ref: str, predicate_type: str = VSA
) -> subprocess.CompletedProcess[str]:
    return run_cosign(
        binary,
        "verify-attestation",
        "--key",
        str(public),
        "--type",
        predicate_type,
        "--insecure-ignore-tlog=true",
        *REGISTRY_FLAGS,
        ref,
    )


def cosign_sign(binary: str, keys: CosignKeys, ref: str) -> None:
    args = ("sign", "--key", str(keys.private), "--tlog-upload=false", *REGISTRY_FLAGS, "-y", ref)
    ok(run_cosign(binary, *args, password=keys.password))


def cosign_attest(binary: str, keys: CosignKeys, ref: str, predicate: Path) -> None:
    args = ("attest", "--key", str(keys.private), "--predicate", str(predicate), "--type", VSA)
    ok(run_cosign(binary, *args, "--tlog-upload=false", *REGISTRY_FLAGS, "-y", ref, password=keys.password))


def statements_in(output: str) -> list[dict[str, Any]]:
    """The in-toto statements of the DSSE envelopes ``cosign verify-attestation`` prints, one per line."""
    return [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in output.splitlines() if line.strip()]


def test_cosign_verifies_a_signature_shipyard_pushed(
    cosign_binary: str, client: RegistryClient, repository: str, shipyard_keys: tuple[ShipyardKey, ShipyardKey]
) -> None:
    signer, stranger = shipyard_keys
    digest = push_tiny_image(client, repository)
    ref = f"{HOST}/{repository}@{digest}"
    assert cosign.push_signature(client, repository, digest, f"{HOST}/{repository}", signer.key) is True
    (claim,) = json.loads(ok(verify(cosign_binary, signer.pem, ref)).stdout)
    assert claim["critical"]["image"]["docker-manifest-digest"] == digest
    assert claim["critical"]["identity"]["docker-reference"] == f"{HOST}/{repository}"
    refused = verify(cosign_binary, stranger.pem, ref)
    assert refused.returncode != 0 and "no matching signatures" in refused.stderr, refused.stderr[-2000:]


def test_cosign_verifies_an_attestation_shipyard_pushed(
    cosign_binary: str, client: RegistryClient, repository: str, shipyard_keys: tuple[ShipyardKey, ShipyardKey]
) -> None:
    signer, stranger = shipyard_keys
    digest = push_tiny_image(client, repository)
    ref = f"{HOST}/{repository}@{digest}"
    statement = in_toto_statement(f"{HOST}/{repository}", digest, VSA, PREDICATE)
    assert cosign.push_attestation(client, repository, digest, statement, signer.key) is True
    assert statements_in(ok(verify_attestation(cosign_binary, signer.pem, ref)).stdout) == [statement]
    refused = verify_attestation(cosign_binary, stranger.pem, ref)
    assert refused.returncode != 0 and "no matching attestations" in refused.stderr, refused.stderr[-2000:]
    other_type = verify_attestation(cosign_binary, signer.pem, ref, "https://slsa.dev/provenance/v1")
    assert other_type.returncode != 0 and "none of the attestations matched the predicate type" in other_type.stderr


def test_shipyard_verifies_what_cosign_signed_and_attested(
    cosign_binary: str,
    cosign_keys: CosignKeys,
    client: RegistryClient,
    repository: str,
    shipyard_keys: tuple[ShipyardKey, ShipyardKey],
    tmp_path: Path,
) -> None:
    digest = push_tiny_image(client, repository)
    ref = f"{HOST}/{repository}@{digest}"
    (tmp_path / "predicate.json").write_text(json.dumps(PREDICATE))
    cosign_sign(cosign_binary, cosign_keys, ref)
    cosign_attest(cosign_binary, cosign_keys, ref, tmp_path / "predicate.json")
    theirs = PublicKey.from_pem(cosign_keys.public.read_bytes())
    stranger = shipyard_keys[1].public
    assert cosign.verified_signers(client, repository, digest, [stranger, theirs]) == [theirs.key_id]
    assert cosign.verified_signers(client, repository, digest, [stranger]) == []
    ((key_id, statement),) = list(cosign.newest_statements(client, repository, digest, [stranger, theirs], VSA))
    assert key_id == theirs.key_id
    assert statement["predicate"] == PREDICATE and statement["_type"] == "https://in-toto.io/Statement/v0.1"
    assert list(cosign.newest_statements(client, repository, digest, [stranger], VSA)) == []
    assert list(cosign.newest_statements(client, repository, digest, [theirs], "https://slsa.dev/provenance/v1")) == []


def test_shipyard_and_cosign_append_to_each_others_tags(
    cosign_binary: str,
    cosign_keys: CosignKeys,
    client: RegistryClient,
    repository: str,
    shipyard_keys: tuple[ShipyardKey, ShipyardKey],
    tmp_path: Path,
) -> None:
    signer = shipyard_keys[0]
    theirs = PublicKey.from_pem(cosign_keys.public.read_bytes())
    digest = push_tiny_image(client, repository)
    ref = f"{HOST}/{repository}@{digest}"
    name = f"{HOST}/{repository}"
    # signatures: shipyard first, cosign appends to shipyard's manifest
    assert cosign.push_signature(client, repository, digest, name, signer.key)
    cosign_sign(cosign_binary, cosign_keys, ref)
    sig = client.manifest(repository, cosign.signature_tag(digest))
    assert sig is not None and len(sig.json["layers"]) == 2
    ok(verify(cosign_binary, signer.pem, ref))
    ok(verify(cosign_binary, cosign_keys.public, ref))
    assert cosign.verified_signers(client, repository, digest, [signer.public, theirs]) == [
        signer.public.key_id,
        theirs.key_id,
    ]
    assert cosign.push_signature(client, repository, digest, name, signer.key) is False  # already there
    # attestations: cosign first, shipyard appends to cosign's manifest
    (tmp_path / "predicate.json").write_text(json.dumps(PREDICATE))
    cosign_attest(cosign_binary, cosign_keys, ref, tmp_path / "predicate.json")
    statement = in_toto_statement(name, digest, VSA, {**PREDICATE, "verificationResult": "FAILED"})
    assert cosign.push_attestation(client, repository, digest, statement, signer.key)
    att = client.manifest(repository, cosign.attestation_tag(digest))
    assert att is not None and len(att.json["layers"]) == 2
    assert statement in statements_in(ok(verify_attestation(cosign_binary, signer.pem, ref)).stdout)
    ok(verify_attestation(cosign_binary, cosign_keys.public, ref))
    found = list(cosign.newest_statements(client, repository, digest, [signer.public, theirs], VSA))
    assert [(key_id, s["predicate"]["verificationResult"]) for key_id, s in found] == [
        (signer.public.key_id, "FAILED"),
        (theirs.key_id, "PASSED"),
    ]  # newest first


def test_a_signature_or_attestation_copied_to_another_digest_is_refused_by_both(
    cosign_binary: str, client: RegistryClient, repository: str, shipyard_keys: tuple[ShipyardKey, ShipyardKey]
) -> None:
    signer = shipyard_keys[0]
    signed, other = push_tiny_image(client, repository), push_tiny_image(client, repository)
    name = f"{HOST}/{repository}"
    assert cosign.push_signature(client, repository, signed, name, signer.key)
    assert cosign.push_attestation(
        client, repository, signed, in_toto_statement(name, signed, VSA, PREDICATE), signer.key
    )
    for tag in (cosign.signature_tag, cosign.attestation_tag):
        copied = client.manifest(repository, tag(signed))
        assert copied is not None
        client.put_manifest(repository, tag(other), copied.raw, MANIFEST_TYPE)
    refused = verify(cosign_binary, signer.pem, f"{name}@{other}")
    assert refused.returncode != 0 and "invalid or missing digest in claim" in refused.stderr, refused.stderr[-2000:]
    refused = verify_attestation(cosign_binary, signer.pem, f"{name}@{other}")
    assert refused.returncode != 0 and "no matching subject digest found" in refused.stderr, refused.stderr[-2000:]
    assert cosign.verified_signers(client, repository, other, [signer.public]) == []
    assert list(cosign.newest_statements(client, repository, other, [signer.public], VSA)) == []
    assert cosign.verified_signers(client, repository, signed, [signer.public]) == [signer.public.key_id]
    assert len(list(cosign.newest_statements(client, repository, signed, [signer.public], VSA))) == 1
