"""The report's models: each model of the release with its digest, size and files, whether the registry holds a
trusted signature and a signed verify verdict for its digest, and which targets run it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from shipyard.cli.main import main
from shipyard.cli.report_commands import fetch_model_evidence
from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import push_attestation, push_signature
from shipyard.oci.modelpack import LocalModel, push_model
from shipyard.oci.signing import SigningKey
from shipyard.record import ModelFileRecord, ModelRecord, ReleaseRecord, save_record
from shipyard.release.channels.trust import Evidence
from shipyard.release.deploy.deployments import Deployment
from shipyard.release.gates.verdicts import SignedVerdict
from shipyard.report.html import render_html
from shipyard.report.markdown import render_markdown
from shipyard.report.model import FromRegistry, build_report, model_runs
from shipyard.verdicts import ModelVerifyVerdict
from tests import reportdata
from tests.memregistry import MemoryRegistry
from tests.reportdata import NEXT, PREVIOUS, RELEASE
from tests.unit.test_report import row_of, section

HOST = "localhost:5000"
KEY_ID = "a1b2c3d4e5f6a7b8c9d0e1f2"


def d(name: str) -> str:
    return "sha256:" + (name.encode().hex() * 64)[:64]


def files(*pairs: tuple[str, int]) -> list[ModelFileRecord]:
    return [ModelFileRecord(path, d(path), size) for path, size in pairs]


def with_models() -> ReleaseRecord:
    """The recorded release, with three models: one signed and verified, one that failed verify and is
    unsigned, one from another registry (not checked); the cpu coordinator runs with bert."""
    rec = reportdata.record()
    ns = "acme"
    rec.models = {
        "bert": ModelRecord(f"{HOST}/{ns}/models/bert", RELEASE, d("bert"), "onnx",
                            files(("model.onnx", 12_000_000), ("tokenizer.json", 700_000),
                                  ("config.json", 900), ("vocab.txt", 230_000)),
                            12_930_900, "path", "models/bert", verdicts={"verify": {"passed": True, "problems": []}}),
        "whisper": ModelRecord(f"{HOST}/{ns}/models/whisper", RELEASE, d("whisper"), "gguf",
                               files(("whisper.gguf", 3_000_000)), 3_000_000, "path", "models/whisper",
                               verdicts={"verify": {"passed": False,
                                                    "problems": ["whisper.gguf: blob is not in the registry"]}}),
        "gpt2": ModelRecord(f"other.example/{ns}/gpt2", "", d("gpt2"), "safetensors",
                            files(("model.safetensors", 500_000)), 500_000, "from",
                            f"other.example/{ns}/gpt2@{d('gpt2')}"),
    }  # fmt: skip
    rec.units["cpu/model-ops-coordinator"].models = {"bert": d("bert")}
    return rec


def evidence() -> dict[str, Evidence | str]:
    return {
        "bert": Evidence([KEY_ID], {"verify": SignedVerdict("verify", "models/bert", RELEASE, "")}),
        "whisper": Evidence([], {}),
        "gpt2": f"the artifact is in other.example, not {HOST}",
    }


def deployment(release: str, state: str, **models: str) -> Deployment:
    at = f"{release[:4]}-{release[4:6]}-{release[6:8]}T09:00:00Z"
    refs = {name: f"{HOST}/acme/models/{name}@{digest}" for name, digest in models.items()}
    return Deployment(release, "channel stable", {}, {}, {}, {}, at=at, state=state, models=refs)  # type: ignore[arg-type]


def deployments() -> dict[str, list[Deployment] | str]:
    return {
        "mainpc": [deployment(PREVIOUS, "complete", bert=d("old")), deployment(RELEASE, "complete", bert=d("bert"))],
        # the next release came with the same bert (same files: one digest): it still runs there
        "local": [deployment(RELEASE, "complete", bert=d("bert")), deployment(NEXT, "complete", bert=d("bert"))],
        "pc2": [deployment(RELEASE, "complete", bert=d("bert")), deployment(NEXT, "complete", bert=d("new"))],
        "edge": [deployment(RELEASE, "rolled-back", whisper=d("whisper"))],
        "far": "The deployment ledger of far could not be read: HTTP 500",
    }


def md_of(rec: ReleaseRecord, **kw: Any) -> str:
    report = build_report(rec, verify=None, findings={}, from_registry=FromRegistry(**kw))
    return render_markdown(report)


def test_each_model_is_listed_with_digest_size_files_signature_verdict_and_targets() -> None:
    md = md_of(with_models(), deployments=deployments(), model_evidence=evidence())
    models = section(md, "## Models")
    assert models.strip().startswith(
        "3 model(s), 16.4 MB: 1 signed, 1 with a signed verify verdict, 1 running on a target"
    )
    assert row_of(models, "bert") == [
        "bert",
        "onnx",
        f"`sha256:{d('bert')[7:19]}`",
        "12.9 MB",
        "4: model.onnx, tokenizer.json, config.json and 1 more",
        "path",
        f"signed ({KEY_ID[:19]}…)",
        "passed (signed verdict)",
        f"mainpc (running), local (running), pc2 (replaced by {NEXT})",
    ]
    whisper = row_of(models, "whisper")
    assert whisper[6:] == [
        "unsigned (no trusted signature)",
        "FAILED: whisper.gguf: blob is not in the registry",
        "edge (rolled-back)",
    ]
    gpt2 = row_of(models, "gpt2")
    assert gpt2[5:] == ["from", f"not checked: the artifact is in other.example, not {HOST}", "not verified", "—"]


def test_a_verdict_signed_for_an_earlier_release_is_named_and_a_record_verdict_is_a_summary() -> None:
    proof = evidence()
    proof["bert"] = Evidence([KEY_ID], {"verify": SignedVerdict("verify", "models/bert", PREVIOUS, "")})
    proof["whisper"] = Evidence([KEY_ID], {})
    rec = with_models()
    rec.models["whisper"].verdicts.verify = ModelVerifyVerdict(passed=True)
    models = section(md_of(rec, model_evidence=proof), "## Models")
    assert row_of(models, "bert")[7] == f"passed (signed verdict of {PREVIOUS})"
    assert row_of(models, "whisper")[6:8] == [f"signed ({KEY_ID[:19]}…)", "passed (record; no signed verdict)"]


def test_without_the_registry_the_record_is_all_there_is() -> None:
    note = "Promotion history not shown: the registry localhost:5000/acme is not reachable (refused)."
    rec = with_models()
    models = section(md_of(rec, model_evidence=dict.fromkeys(rec.models, note)), "## Models")
    assert "(signatures not checked)" in models.splitlines()[1]
    assert row_of(models, "bert")[6:8] == [f"not checked: {note}", "passed (record)"]


def test_a_release_without_models_has_no_models_section() -> None:
    rec = reportdata.record()
    assert "## Models" not in md_of(rec)
    assert 'id="models"' not in render_html(build_report(rec, verify=None, findings={}, from_registry=FromRegistry()))


def test_model_runs_by_digest_whatever_the_release_was_called() -> None:
    rec = with_models()
    runs = model_runs(rec.models["bert"], deployments())
    assert [(r.target, r.state, r.release) for r in runs] == [
        ("mainpc", "running", RELEASE),
        ("local", "running", NEXT),
        ("pc2", f"replaced by {NEXT}", RELEASE),
    ]
    assert model_runs(replace(rec.models["bert"], digest=d("nowhere")), deployments()) == ()


def test_html_has_a_row_per_model_with_badges() -> None:
    report = build_report(
        with_models(),
        verify=None,
        findings={},
        from_registry=FromRegistry(deployments=deployments(), model_evidence=evidence()),
    )
    html = render_html(report)
    assert '<section id="models"><h2>Models</h2>' in html
    start = html.index('<tr data-model="bert">')
    bert = html[start : html.index("</tr>", start)]
    assert f'title="{HOST}/acme/models/bert@{d("bert")}"' in bert
    assert '<td class="signed"><span class="badge ok">signed' in bert
    assert '<td class="verified"><span class="badge ok">passed (signed verdict)</span>' in bert
    assert "model.onnx (12000000 bytes); tokenizer.json (700000 bytes)" in bert
    start = html.index('<tr data-model="whisper">')
    whisper = html[start : html.index("</tr>", start)]
    assert '<span class="badge fail">unsigned' in whisper and '<span class="badge fail">FAILED' in whisper


def vsa(repository: str, digest: str, release: str, revision: str) -> dict[str, Any]:
    """A signed verify verdict about a model's digest, as the verify gate attaches it."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repository, "digest": {"sha256": digest.removeprefix("sha256:")}}],
        "predicateType": "https://slsa.dev/verification_summary/v1",
        "predicate": {
            "verifier": {"id": "https://github.com/shipyard-ml/shipyard"},
            "verificationResult": "PASSED",
            "shipyard": {"gate": "verify", "unit": "models/bert", "release": release, "revision": revision},
        },
    }


def test_evidence_is_read_from_the_registry_by_digest(tmp_path: Path) -> None:
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "model.onnx").write_bytes(b"onnx weights " * 100)
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / "model.gguf").write_bytes(b"gguf weights " * 100)
    trusted, stranger = SigningKey.generate(), SigningKey.generate()
    mem = MemoryRegistry()
    rec = with_models()
    with RegistryClient(parse_registry(f"{HOST}/acme"), transport=httpx.MockTransport(mem.handle)) as registry:
        for name in ("bert", "whisper"):
            pushed = push_model(
                registry, f"acme/models/{name}", LocalModel.scan(tmp_path / name, name=name, format="onnx"), tag=RELEASE
            )
            rec.models[name].digest = pushed.digest
        bert, whisper = rec.models["bert"], rec.models["whisper"]
        push_signature(registry, "acme/models/bert", bert.digest, bert.repository, trusted)
        push_attestation(
            registry,
            "acme/models/bert",
            bert.digest,
            vsa(bert.repository, bert.digest, RELEASE, rec.revision),
            trusted,
            label="verify",
        )
        # whisper: signed and attested, by a key nobody trusts
        push_signature(registry, "acme/models/whisper", whisper.digest, whisper.repository, stranger)
        push_attestation(
            registry,
            "acme/models/whisper",
            whisper.digest,
            vsa(whisper.repository, whisper.digest, RELEASE, rec.revision),
            stranger,
            label="verify",
        )
        found = fetch_model_evidence(registry, [trusted.public], rec)
        without_keys = fetch_model_evidence(registry, "no trusted keys (shipyard.toml: …)", rec)
    assert isinstance(found["bert"], Evidence) and found["bert"].signers == [trusted.public.key_id]
    assert found["bert"].verdicts["verify"].release == RELEASE
    assert found["whisper"] == Evidence([], {})
    assert found["gpt2"] == f"the artifact is in other.example, not {HOST}"
    assert without_keys == dict.fromkeys(rec.models, "no trusted keys (shipyard.toml: …)")
    models = section(md_of(rec, model_evidence=found), "## Models")
    assert row_of(models, "bert")[6:8] == [f"signed ({trusted.public.key_id[:19]}…)", "passed (signed verdict)"]
    assert row_of(models, "whisper")[6] == "unsigned (no trusted signature)"


def test_cli_reports_the_models_when_the_registry_is_not_reachable(tmp_path: Path) -> None:
    rec = with_models()
    rec.registry = "127.0.0.1:9/nothing-listens"
    reportdata.materialize(tmp_path, registry=rec.registry)
    save_record(tmp_path, rec)
    assert main(["--project", str(tmp_path), "report", RELEASE, "--json"]) == 0
    md = (tmp_path / ".shipyard" / "reports" / RELEASE / "report.md").read_text()
    models = section(md, "## Models")
    assert "(signatures not checked)" in models
    assert row_of(models, "bert")[6] == "not checked: the registry 127.0.0.1:9/nothing-listens is not reachable"
    assert row_of(models, "whisper")[7] == "FAILED: whisper.gguf: blob is not in the registry"
