"""`shipyard prune` and `shipyard report` on releases with models, against the real registry (127.0.0.1:5000).

Three releases under a namespace of their own, each with a service image (as buildx pushes it) and ModelPack
artifacts pushed with ``push_model``, signed and attested as the build and verify do; a channel ledger and a
deployment ledger naming model digests; the project's records. Prune is then checked from the registry API
itself: what a kept release, a ledger or a target needs stays whole (signature, attestation, every file's
bytes), the rest goes with its ``.sig`` and ``.att``, and a removed release's tag on a kept model goes alone.
The report of the newest release lists its models, signed and verified from the registry, and where they run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.config.keys import development_key, machine_state_dir
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import push_attestation, push_signature, verified_signers
from shipyard.oci.modelpack import LocalModel, push_model, verify_model
from shipyard.oci.reference import RegistryNamespace
from shipyard.oci.signing import SigningKey
from shipyard.record import ModelFileRecord, ModelRecord, ReleaseRecord, UnitRecord, save_record
from shipyard.release.channels.ledger import Entry, Ledger, save_ledger
from shipyard.release.deploy.deployments import Deployment, DeploymentLedger, save_deployments
from shipyard.release.gates.verdicts import signed_verdicts
from tests.integration.test_prune import push_image

HOST = "localhost:5000"
API = "http://127.0.0.1:5000/v2"
ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
SERVICE = "cpu/hello"
GONE = "20241230-0000beef"  # a release whose tags are gone from the registry; a ledger still names its model


def digest_of(repository: str, reference: str) -> str | None:
    """What the registry itself answers for ``repository:reference`` (None: no such manifest or tag)."""
    response = httpx.get(f"{API}/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}, timeout=30)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers["Docker-Content-Digest"]


def tags_of(repository: str) -> list[str]:
    response = httpx.get(f"{API}/{repository}/tags/list", timeout=30)
    return [] if response.status_code == 404 else list(response.json().get("tags") or [])


def vsa(repository: str, digest: str, record: ReleaseRecord, name: str) -> dict[str, Any]:
    """The signed verify verdict of a model, as the verify gate attaches it."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repository, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": "https://slsa.dev/verification_summary/v1",
        "predicate": {
            "verifier": {"id": "https://github.com/shipyard-ml/shipyard"},
            "verificationResult": "PASSED",
            "shipyard": {"gate": "verify", "unit": f"models/{name}", "release": record.release,
                         "revision": record.revision, "policy": {}, "result": {"passed": True}},
        },
    }  # fmt: skip


@dataclass
class World:
    namespace: str
    project: Path
    client: RegistryClient
    signer: SigningKey
    models_dir: Path
    releases: list[ReleaseRecord] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # "bert-a" -> manifest digest

    def repo(self, name: str) -> str:
        return f"{self.namespace}/models/{name}"

    def shipyard(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "shipyard", "--project", str(self.project), *args,
             "--registry", f"{HOST}/{self.namespace}"],
            env={**os.environ, "SHIPYARD_REGISTRY": f"{HOST}/{self.namespace}"},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"shipyard {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def model(self, name: str, variant: str, tag: str) -> ModelRecord:
        """Push the model files of ``variant`` (the same bytes each time it is named) under ``tag``, signed."""
        directory = self.models_dir / f"{name}-{variant}"
        if not directory.is_dir():
            directory.mkdir(parents=True)
            (directory / "model.onnx").write_bytes(hashlib.sha256(f"{name} {variant}".encode()).digest() * 4096)
            (directory / "config.json").write_text(json.dumps({"name": name, "variant": variant}))
        pushed = push_model(self.client, self.repo(name), LocalModel.scan(directory, name=name, format="onnx"), tag=tag)
        self.digests[f"{name}-{variant}"] = pushed.digest
        repository = f"{HOST}/{self.repo(name)}"
        push_signature(self.client, self.repo(name), pushed.digest, repository, self.signer)
        files = [ModelFileRecord(f.path, f.digest, f.size) for f in pushed.files]
        size = sum(f.size for f in pushed.files)
        return ModelRecord(repository, tag, pushed.digest, "onnx", files, size, "path", f"models/{name}",
                           verdicts={"verify": {"passed": True, "problems": []}})  # fmt: skip

    def release(self, day: int, models: dict[str, str]) -> ReleaseRecord:
        sha = hashlib.sha1(f"{self.namespace} release {day}".encode()).hexdigest()
        name = f"202501{day:02d}-{sha[:8]}"
        repo = f"{self.namespace}/{SERVICE}"
        digest = push_image(self.client, repo, os.urandom(32 * 1024), [name])
        record = ReleaseRecord(name, sha, f"2025-01-{day:02d}T12:00:00Z", f"{HOST}/{self.namespace}")
        record.models = {model: self.model(model, variant, name) for model, variant in models.items()}
        record.units[SERVICE] = UnitRecord(
            profile="cpu", image="hello", kind="service", platform="linux/amd64", repository=f"{HOST}/{repo}",
            tag=name, digest=digest, size=0, parent="scratch", duration_s=0.0, steps=0, cache_hits=0,
            models={m: r.digest for m, r in record.models.items()},
        )  # fmt: skip
        push_signature(self.client, repo, digest, f"{HOST}/{repo}", self.signer)
        for model_name, model in record.models.items():
            statement = vsa(model.repository, model.digest, record, model_name)
            push_attestation(self.client, self.repo(model_name), model.digest, statement, self.signer, label="verify")
        save_record(self.project, record)
        self.releases.append(record)
        return record


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    namespace = f"shipyard-it/prune-models-{uuid.uuid4().hex[:10]}"
    client = RegistryClient(RegistryNamespace(HOST, namespace))
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure: the registry is not up
        pytest.fail(f"the registry on {HOST} does not answer ({exc}): run scripts/up.sh")
    work = tmp_path_factory.mktemp("prune-models")
    w = World(namespace, work / "project", client, development_key(machine_state_dir()), work / "models")
    (w.project / ".shipyard").mkdir(parents=True)
    # bert: the same files in r1 and r2 (one digest, two release tags), new ones in r3
    # whisper: w1 in r1 only, w2 in r2 and r3; tiny: r1's tag only, but r3's record names it by digest
    # gpt: r1's tag only, but a channel ledger entry names it
    r1 = w.release(1, {"bert": "a", "whisper": "w1", "tiny": "t", "gpt": "g"})
    w.release(2, {"bert": "a", "whisper": "w2"})
    r3 = w.release(3, {"bert": "b", "whisper": "w2"})
    r3.models["tiny"] = replace(r1.models["tiny"], tag="")  # a `from` the build could not tag under r3
    save_record(w.project, r3)
    stable = Ledger("stable", [Entry("promote", GONE, {"models/gpt": w.digests["gpt-g"]}, {}, state="complete")])
    save_ledger(client, namespace, stable)
    # a target still runs w1 under a release whose images were pruned long ago
    ref = f"{HOST}/{w.repo('whisper')}@{w.digests['whisper-w1']}"
    running = Deployment(GONE, "channel stable", {}, {}, {}, {}, state="complete", models={"whisper": ref})
    newest = Deployment(r3.release, "channel stable", {}, {}, {}, {}, state="complete",
                        models={"bert": f"{HOST}/{w.repo('bert')}@{w.digests['bert-b']}"})  # fmt: skip
    save_deployments(client, namespace, DeploymentLedger("mainpc", [running]))
    save_deployments(client, namespace, DeploymentLedger("pc2", [newest]))
    (w.project / "shipyard.toml").write_text(
        '[project]\nname = "prune-models"\n\n[images]\n'
        + "".join(
            f'\n[targets.{t}]\nprofile = "cpu"\nengine = "unix:///var/run/docker.sock"\n' for t in ("mainpc", "pc2")
        )
    )
    yield w
    for repository in [f"{namespace}/{SERVICE}", *(w.repo(m) for m in ("bert", "whisper", "tiny", "gpt")),
                       f"{namespace}/shipyard-ledger", f"{namespace}/shipyard-deployments"]:  # fmt: skip
        for tag in tags_of(repository):
            if digest := digest_of(repository, tag):
                httpx.delete(f"{API}/{repository}/manifests/{digest}", timeout=30)
    client.close()


def test_prune_keeps_the_models_releases_ledgers_and_targets_need_and_deletes_the_rest(world: World) -> None:
    r1, r2, r3 = world.releases
    m = world.digests
    plan = json.loads(world.shipyard("prune", "--keep", "1", "--dry-run", "--json").stdout)
    assert list(plan["kept"]) == [r3.release] and plan["removed"] == [r2.release, r1.release]
    assert plan["models"][r3.release] == {"bert": m["bert-b"], "whisper": m["whisper-w2"]}
    assert plan["models"][r1.release]["tiny"] == m["tiny-t"]
    deleting = {(d["repository"], d["digest"]) for d in plan["deletions"]}
    assert (world.repo("bert"), m["bert-a"]) in deleting
    assert digest_of(world.repo("bert"), m["bert-a"]) == m["bert-a"]  # a dry run deletes nothing

    table = world.shipyard("prune", "--keep", "1").stdout
    assert "bert, gpt, tiny, whisper" in table and "garbage collection" in table, table
    # bert a (r1, r2): nothing keeps it; it is gone with its signature and its verdicts
    assert digest_of(world.repo("bert"), m["bert-a"]) is None
    assert not any(m["bert-a"][7:] in tag for tag in tags_of(world.repo("bert")))
    assert digest_of(world.repo("bert"), r1.release) is None and digest_of(world.repo("bert"), r2.release) is None
    # what stays is whole: the tag of the kept release, every file's bytes, the signature and the verdict
    trusted = [world.signer.public]
    kept = {"bert": ("bert-b", r3.release), "whisper": ("whisper-w2", r3.release), "tiny": ("tiny-t", None),
            "gpt": ("gpt-g", None)}  # fmt: skip
    kept_w1 = {"whisper-w1"}
    for name, (variant, tag) in kept.items():
        digest = m[variant]
        assert verify_model(world.client, world.repo(name), digest, deep=True) == [], name
        assert verified_signers(world.client, world.repo(name), digest, trusted) == [world.signer.public.key_id]
        assert "verify" in signed_verdicts(world.client, trusted, world.repo(name), digest), name
        if tag:
            assert digest_of(world.repo(name), tag) == digest
    for variant in kept_w1:  # a target runs it: kept, though only a removed release was tagged on it
        digest = m[variant]
        assert verify_model(world.client, world.repo("whisper"), digest, deep=True) == []
        assert verified_signers(world.client, world.repo("whisper"), digest, trusted) == [world.signer.public.key_id]
    # the removed releases' tags on kept models went alone
    for name in ("whisper", "tiny", "gpt"):
        assert digest_of(world.repo(name), r1.release) is None, name
    assert digest_of(world.repo("whisper"), r2.release) is None
    # the removed releases' service images are gone, the kept one's is there
    assert digest_of(f"{world.namespace}/{SERVICE}", r1.units[SERVICE].digest) is None
    assert digest_of(f"{world.namespace}/{SERVICE}", r3.release) == r3.units[SERVICE].digest
    # a second run finds nothing more to do
    again = json.loads(world.shipyard("prune", "--keep", "1", "--json").stdout)
    assert again["deletions"] == [] and again["untagged"] == []
    # and still sees the kept models no release tag is on (by the ledgers' and the record's digests): their
    # signatures and verdicts stay
    for name, variant in (("whisper", "whisper-w1"), ("tiny", "tiny-t"), ("gpt", "gpt-g")):
        assert verified_signers(world.client, world.repo(name), m[variant], trusted) == [world.signer.public.key_id]
        assert "verify" in signed_verdicts(world.client, trusted, world.repo(name), m[variant]), name


def test_report_lists_the_models_signed_and_verified_from_the_registry_and_where_they_run(world: World) -> None:
    r3 = world.releases[-1]
    paths = json.loads(world.shipyard("report", r3.release, "--json").stdout)
    md = Path(paths["markdown"]).read_text()
    section = md[md.index("## Models\n") :].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in section.splitlines() if line.startswith("| ") and "---" not in line}  # fmt: skip
    key = world.signer.public.key_id[:19]
    bert = rows["bert"]
    assert bert[2] == f"`sha256:{world.digests['bert-b'][7:19]}`"
    assert bert[4].startswith("2: ") and "model.onnx" in bert[4]
    assert bert[6:] == [f"signed ({key}…)", "passed (signed verdict)", "pc2 (running)"]
    assert rows["whisper"][6:8] == [f"signed ({key}…)", "passed (signed verdict)"]
    assert rows["whisper"][8] == "—"  # mainpc runs w1, not this release's w2
    html = Path(paths["html"]).read_text()
    assert '<tr data-model="bert">' in html and '<span class="badge ok">signed' in html
