"""The model-signing statement and bundle made from ModelPack layer digests: shape, determinism, the
directory's ignore rules, the bundle's key checks, and the referrer in an in-memory registry; then the
real ``model_signing`` library verifying a bundle over a directory (no registry)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from shipyard.oci.artifacts import MANIFEST_TYPE, OneFile, artifact_manifest
from shipyard.oci.attestations import INDEX_TYPE, referrers_tag
from shipyard.oci.client import RegistryClient
from shipyard.oci.model_signature import (
    BUNDLE_TYPE,
    GIT_PATHS,
    PREDICATE_TYPE,
    HashingRules,
    NotSignable,
    hashing_rules,
    key_hint,
    push_model_signature,
    read_model_signature,
    sign_statement,
    statement,
    verified_statement,
)
from shipyard.oci.modelfiles import ModelFile, model_paths, scan_model
from shipyard.oci.modelpack import model_config, model_manifest
from shipyard.oci.signing import SigningKey
from tests.memregistry import MemoryRegistry

REPO = "acme/models/affect"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


FILES = {"config.json": b"{}", "a-b": b"dash", "a/b/c.bin": b"deep", "a/z.txt": b"z"}
PAIRS = [(path, sha(data)) for path, data in FILES.items()]


def payload(bundle: bytes) -> dict[str, object]:
    return json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))  # type: ignore[no-any-return]


def test_the_statement_is_model_signings_v1_predicate_over_the_files() -> None:
    found = statement("affect", PAIRS)
    assert found["_type"] == "https://in-toto.io/Statement/v1"
    assert found["predicateType"] == PREDICATE_TYPE == "https://model_signing/signature/v1.0"
    resources = found["predicate"]["resources"]
    # sorted by path components, as model_signing sorts them: "a/..." before "a-b" ("/" > "-" as a string)
    assert [r["name"] for r in resources] == ["a/b/c.bin", "a/z.txt", "a-b", "config.json"]
    assert all(r["algorithm"] == "sha256" and "sha256:" + r["digest"] == sha(FILES[r["name"]]) for r in resources)
    root = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources)).hexdigest()
    assert found["subject"] == [{"name": "affect", "digest": {"sha256": root}}]
    assert found["predicate"]["serialization"] == {
        "method": "files",
        "hash_type": "sha256",
        "allow_symlinks": False,
        "ignore_paths": sorted(GIT_PATHS),
    }


def test_the_same_files_give_the_same_statement_and_payload_in_any_order() -> None:
    key = SigningKey.generate()
    one, other = statement("affect", PAIRS), statement("affect", list(reversed(PAIRS)))
    assert json.dumps(one, sort_keys=True) == json.dumps(other, sort_keys=True)
    first, second = sign_statement(one, key), sign_statement(other, key)
    assert payload(first) == payload(second) == one
    assert json.loads(first)["dsseEnvelope"]["payload"] == json.loads(second)["dsseEnvelope"]["payload"]
    changed = statement("affect", [*PAIRS[:-1], (PAIRS[-1][0], sha(b"other"))])
    assert changed["subject"] != one["subject"]


def test_an_ignore_path_that_holds_a_model_file_is_dropped() -> None:
    rules = HashingRules(ignore_paths=(".git", "a", "a-b/x"), allow_symlinks=True)
    found = statement("affect", PAIRS, rules)["predicate"]["serialization"]
    assert found["ignore_paths"] == [".git", "a-b/x"] and found["allow_symlinks"] is True


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("/abs", sha(b""))], "not a relative path"),
        ([("a/../b", sha(b""))], "not a relative path"),
        ([("./a", sha(b""))], "not a relative path"),
        ([("a", "sha512:" + "0" * 128)], "is not a sha256 digest"),
        ([("a", sha(b"")), ("a", sha(b"x"))], "named by more than one file"),
        ([], "no files"),
    ],
)
def test_what_cannot_be_stated_is_refused_naming_it(files: list[tuple[str, str]], message: str) -> None:
    with pytest.raises(NotSignable, match=message):
        statement("affect", files)


def test_the_directory_rules_name_what_model_paths_leaves_out(tmp_path: Path) -> None:
    for rel in ("w.bin", "sub/x.json", ".hidden", "sub/.DS_Store", ".cache/huggingface/blob", ".git/HEAD"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode())
    rules = hashing_rules(tmp_path)
    assert rules == HashingRules(
        (".cache", ".git", ".gitattributes", ".github", ".gitignore", ".hidden", "sub/.DS_Store"), False
    )
    assert model_paths(tmp_path) == ["sub/x.json", "w.bin"]
    os.symlink(tmp_path / "w.bin", tmp_path / "link.bin")
    assert hashing_rules(tmp_path).allow_symlinks


def test_the_bundle_names_and_verifies_with_its_key_only() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    document = statement("affect", PAIRS)
    bundle = sign_statement(document, key)
    parsed = json.loads(bundle)
    assert parsed["mediaType"] == BUNDLE_TYPE
    assert parsed["verificationMaterial"] == {"publicKey": {"hint": key_hint(key.public)}, "tlogEntries": []}
    assert key_hint(key.public) == hashlib.sha256(key.public.pem()).hexdigest()
    assert parsed["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
    assert verified_statement(bundle, key.public) == document
    assert verified_statement(bundle, other.public) is None  # the hint names another key
    parsed["verificationMaterial"]["publicKey"]["hint"] = key_hint(other.public)
    assert verified_statement(json.dumps(parsed).encode(), other.public) is None  # and it did not sign it
    forged = dict(document, subject=[{"name": "affect", "digest": {"sha256": "0" * 64}}])
    parsed = json.loads(bundle)
    parsed["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(forged).encode()).decode()
    assert verified_statement(json.dumps(parsed).encode(), key.public) is None
    assert repr(key) not in bundle.decode() and b"PRIVATE" not in bundle


def push_pack(mem: MemoryRegistry, files: tuple[ModelFile, ...], tag: str = "r1") -> str:
    raw = model_manifest(model_config("affect", "safetensors", files), files)
    return mem.put(REPO, tag, raw, MANIFEST_TYPE)


def model_dir(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_pushed_as_a_referrer_read_back_by_a_trusted_key_and_not_pushed_twice(
    tmp_path: Path, mem: MemoryRegistry, registry: RegistryClient
) -> None:
    key, stranger = SigningKey.generate(), SigningKey.generate()
    digest = push_pack(mem, scan_model(model_dir(tmp_path / "m", FILES)))
    bundle, added = push_model_signature(registry, REPO, digest, key, name="affect")
    assert added
    index = json.loads(mem.manifests[(REPO, mem.tags[(REPO, referrers_tag(digest))])][0])
    [descriptor] = index["manifests"]
    assert descriptor["artifactType"] == BUNDLE_TYPE
    referrer = json.loads(mem.manifests[(REPO, descriptor["digest"])][0])
    assert referrer["subject"]["digest"] == digest and referrer["layers"][0]["mediaType"] == BUNDLE_TYPE
    assert mem.blobs[referrer["layers"][0]["digest"]] == bundle
    assert {r["name"] for r in payload(bundle)["predicate"]["resources"]} == set(FILES)  # type: ignore[index]

    again, added = push_model_signature(registry, REPO, digest, key, name="affect")
    assert (again, added) == (bundle, False)
    assert read_model_signature(registry, REPO, digest, [stranger.public, key.public]) == (bundle, key.public)
    assert read_model_signature(registry, REPO, digest, [stranger.public]) is None
    assert read_model_signature(registry, REPO, digest, []) is None  # no keys: nothing handed out


def test_a_bundle_listed_for_another_model_is_not_handed_out(
    tmp_path: Path, mem: MemoryRegistry, registry: RegistryClient
) -> None:
    key = SigningKey.generate()
    digest = push_pack(mem, scan_model(model_dir(tmp_path / "m", FILES)))
    bundle, _ = push_model_signature(registry, REPO, digest, key, name="affect")
    other = push_pack(mem, scan_model(model_dir(tmp_path / "n", {**FILES, "config.json": b"[]"})), tag="r2")
    # the referrers index of one model copied under the other's tag: listed, but its subject is the first
    mem.tags[(REPO, referrers_tag(other))] = mem.tags[(REPO, referrers_tag(digest))]
    assert read_model_signature(registry, REPO, other, [key.public]) is None
    # the first model's bundle in a referrer made for the other: the subject is not signed, the files are
    subject = registry.manifest(REPO, other)
    assert subject is not None
    raw = artifact_manifest(registry, REPO, bundle, OneFile(BUNDLE_TYPE, "model.sig", BUNDLE_TYPE), subject=subject)
    copied = mem.put(REPO, "copied", raw, MANIFEST_TYPE)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{"digest": copied, "artifactType": BUNDLE_TYPE}],
    }
    mem.put(REPO, referrers_tag(other), json.dumps(index).encode(), INDEX_TYPE)
    assert read_model_signature(registry, REPO, other, [key.public]) is None
    assert read_model_signature(registry, REPO, digest, [key.public]) == (bundle, key.public)


def test_an_archive_layer_gets_no_bundle(mem: MemoryRegistry, registry: RegistryClient) -> None:
    tar = ModelFile("weights", "application/vnd.cncf.model.weight.v1.tar", sha(b"tar"), 3, sha(b"tar"))
    digest = push_pack(mem, (tar,))
    with pytest.raises(NotSignable, match="weights: layer .* is an archive"):
        push_model_signature(registry, REPO, digest, SigningKey.generate(), name="affect")


def test_model_signing_verifies_the_bundle_over_the_directory_and_refuses_a_changed_file(tmp_path: Path) -> None:
    from model_signing import verifying  # the real library (dev extra), as `model_signing verify key` runs it

    directory = model_dir(tmp_path / "affect", {**FILES, ".cache/x": b"cache", ".gitignore": b"*"})
    key = SigningKey.generate()
    (tmp_path / "k.pub").write_bytes(key.public.pem())
    files = [(f.path, f.digest) for f in scan_model(directory)]
    (tmp_path / "model.sig").write_bytes(sign_statement(statement("affect", files, hashing_rules(directory)), key))
    verifier = verifying.Config().use_elliptic_key_verifier(public_key=tmp_path / "k.pub")
    verifier.verify(directory, tmp_path / "model.sig")
    (directory / "a" / "z.txt").write_bytes(b"tampered")
    with pytest.raises(ValueError, match=r"Hash mismatch for 'a/z\.txt'"):
        verifier.verify(directory, tmp_path / "model.sig")


def test_the_cli_names_the_model_a_release_does_not_have(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from shipyard.cli.main import main
    from shipyard.record import ModelRecord, ReleaseRecord, save_record

    model = ModelRecord("localhost:5000/acme/models/affect", "r1", sha(b"m"), "safetensors", [], 0, "path", "m")
    save_record(
        tmp_path, ReleaseRecord("20250111-abcdef12", "abcdef12", "", "localhost:5000/acme", models={"affect": model})
    )
    argv = ["--project", str(tmp_path), "model-signature", "--model", "other", "-o", str(tmp_path / "s.sig")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--model other: release 20250111-abcdef12" in err and "(it has: affect)" in err, err
    assert not (tmp_path / "s.sig").exists()
