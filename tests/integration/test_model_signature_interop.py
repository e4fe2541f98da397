"""sigstore's ``model_signing`` CLI verifies a model shipyard signed: the build's model step (no images)
pushes a small model directory to the real local registry and signs it, ``shipyard model-signature``
hands the bundle and the key out, and ``model_signing verify key`` (the venv's real binary) accepts the
source directory (hidden files and all, which the model leaves out) and the files pulled from the
artifact, and refuses either once one file changed or one more file is there.

The registry namespace is this file's own (``localhost:5000/wt-msig-it-<run>``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.build.models import release_models
from shipyard.build.options import BuildContext, BuildOptions
from shipyard.build.prepare import plan_for
from shipyard.build.revision import read_revision
from shipyard.config.keys import resolve_keys
from shipyard.config.project import load_project
from shipyard.config.registry import parse_registry
from shipyard.events import Event
from shipyard.oci.attestations import referrers_tag
from shipyard.oci.client import RegistryClient
from shipyard.oci.model_signature import BUNDLE_TYPE
from shipyard.oci.modelpack import LocalModel, inspect_model, push_model
from shipyard.oci.signing import SigningKey
from shipyard.record import ReleaseRecord, reports_dir, save_record
from shipyard.runner import Runner
from tests.conftest import git, make_project
from tests.integration.conftest import shipyard

RUN = secrets.token_hex(3)
REGISTRY = f"localhost:5000/wt-msig-it-{RUN}"
SERVICE = "affective-processing-center"
SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {"SHIPYARD_REGISTRY": REGISTRY, "SHIPYARD_BASE_OVERRIDE": "local", "PYTHONPATH": str(SRC)}
MODEL_SIGNING = Path(sys.executable).with_name("model_signing")
FILES = {
    "weights.safetensors": os.urandom(48 << 10),
    "config.json": b'{"classes": ["joy", "anger"]}',
    "tokenizer/vocab.txt": b"happy\ngrateful\n",
    "README.md": b"# affect-nb\n",
}
HIDDEN = {
    ".gitattributes": b"*.safetensors filter=lfs\n",
    ".cache/huggingface/download.lock": b"",
    "tokenizer/.keep": b"",
}
MODEL = '\n[models.affect-nb]\npath = "models/affect-nb"\nformat = "safetensors"\n'


def verify(directory: Path, signature: Path, public_key: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(MODEL_SIGNING), "verify", "key", str(directory), "--signature", str(signature)]
    return subprocess.run([*argv, "--public_key", str(public_key)], capture_output=True, text=True, timeout=120)


def release_the_model(root: Path, events: list[Event]) -> ReleaseRecord:
    """What ``shipyard build`` does for the models (push, sign), then the record it writes, images aside."""
    project = load_project(root, base_override="local")
    revision = read_revision(root)
    target = parse_registry(REGISTRY)
    keys = resolve_keys(project.catalog.trusted_keys, target, need_signer=True)
    with RegistryClient(target) as registry:
        ctx = BuildContext(project, revision, Runner(), registry, root / ".cache", events.append, signer=keys.signer)
        models = release_models(ctx, plan_for(project, revision, BuildOptions(target=target)))
    record = ReleaseRecord(revision.release_tag, revision.sha, revision.created, REGISTRY, models=models)
    save_record(root, record)
    return record


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not MODEL_SIGNING.is_file():
        pytest.fail(f"{MODEL_SIGNING}: not installed; pip install -e '.[dev]' (model-signing is a dev extra)")
    root = make_project(tmp_path_factory.mktemp("msig") / "proj", services=(SERVICE,), profiles=("cpu",), models=False)
    for rel, data in {**FILES, **HIDDEN}.items():
        (root / "models" / "affect-nb" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "models" / "affect-nb" / rel).write_bytes(data)
    catalog = root / "shipyard.toml"
    table = f"[images.{SERVICE}.service]\n"
    catalog.write_text(catalog.read_text().replace(table, f'{table}models = ["affect-nb"]\n') + MODEL)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "a service with a model")
    return root


def test_model_signing_verifies_what_shipyard_signed_and_refuses_a_changed_file(project: Path, tmp_path: Path) -> None:
    events: list[Event] = []
    record = release_the_model(project, events)
    model = record.models["affect-nb"]
    assert sorted(f.path for f in model.files) == sorted(FILES)  # the hidden files are not the model's
    assert any("model-signing bundle pushed" in e.message for e in events), [e.message for e in events]

    signature, public_key = tmp_path / "model.sig", tmp_path / "model.pub"
    out = shipyard(
        "--project", str(project), "model-signature", record.release, "--model", "affect-nb",
        "-o", str(signature), "--public-key", str(public_key), env=ENV,
    )  # fmt: skip
    assert f"wrote {signature}" in out.stdout, out.stdout
    assert (
        signature.read_bytes()
        == (reports_dir(project, record.release) / "model-signing" / "affect-nb.sig").read_bytes()
    )
    bundle = json.loads(signature.read_text())
    assert bundle["mediaType"] == BUNDLE_TYPE

    # the directory shipyard pushed, hidden files and all, as model_signing sees it
    source = project / "models" / "affect-nb"
    ok = verify(source, signature, public_key)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Verification succeeded" in ok.stdout

    # the files as pulled from the registry's artifact (by its layers: one blob per file)
    pulled = tmp_path / "pulled" / "affect-nb"
    host, _, path = model.repository.partition("/")
    with RegistryClient(parse_registry(REGISTRY)) as registry:
        pack = inspect_model(registry, path, model.digest)
        for file in pack.files:
            (pulled / file.path).parent.mkdir(parents=True, exist_ok=True)
            (pulled / file.path).write_bytes(registry.blob(path, file.digest))
    ok = verify(pulled, signature, public_key)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    (pulled / "config.json").write_bytes(b'{"classes": ["joy", "anger", "tampered"]}')
    bad = verify(pulled, signature, public_key)
    assert bad.returncode == 1 and "Hash mismatch for 'config.json'" in bad.stderr, bad.stdout + bad.stderr

    extra = tmp_path / "extra"
    shutil.copytree(source, extra)
    (extra / "tokenizer" / "merges.txt").write_bytes(b"h a\n")
    bad = verify(extra, signature, public_key)
    assert bad.returncode == 1 and "tokenizer/merges.txt" in bad.stderr, bad.stdout + bad.stderr

    # another key's public half: refused before the files are looked at
    stranger = tmp_path / "stranger.pub"
    stranger.write_bytes(SigningKey.generate().public.pem())
    bad = verify(source, signature, stranger)
    assert bad.returncode == 1 and "Key mismatch" in bad.stderr, bad.stdout + bad.stderr


def test_a_second_release_of_the_same_files_pushes_no_second_bundle(project: Path) -> None:
    events: list[Event] = []
    record = release_the_model(project, events)
    assert any("model-signing bundle present" in e.message for e in events), [e.message for e in events]
    model = record.models["affect-nb"]
    host, _, path = model.repository.partition("/")
    with RegistryClient(parse_registry(REGISTRY)) as registry:
        index = registry.manifest(path, referrers_tag(model.digest))
    assert index is not None
    bundles = [d for d in index.json["manifests"] if d.get("artifactType") == BUNDLE_TYPE]
    assert len(bundles) == 1, index.json


def test_a_model_without_a_trusted_bundle_is_exit_10_and_no_file(project: Path, tmp_path: Path) -> None:
    record = release_the_model(project, [])
    model = record.models["affect-nb"]
    host, _, path = model.repository.partition("/")
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.bin").write_bytes(os.urandom(1024))
    with RegistryClient(parse_registry(REGISTRY)) as registry:  # pushed, but never signed
        pushed = push_model(registry, path, LocalModel.scan(other, name="affect-nb", format="safetensors"))
    unsigned = dataclasses.replace(model, digest=pushed.digest)
    save_record(project, dataclasses.replace(record, models={"affect-nb": unsigned}))
    out = shipyard(
        "--project", str(project), "model-signature", record.release, "--model", "affect-nb",
        "-o", str(tmp_path / "s.sig"), env=ENV, check=False,
    )  # fmt: skip
    assert out.returncode == 10, out.stdout + out.stderr
    assert "no model-signing bundle of" in out.stderr and pushed.digest in out.stderr, out.stderr
    assert not (tmp_path / "s.sig").exists()
