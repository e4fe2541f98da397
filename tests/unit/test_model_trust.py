"""Models on their way to a channel or a machine: signed and verified by digest, moved with the images."""

from __future__ import annotations

from pathlib import Path

from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import push_signature
from shipyard.record import ModelFileRecord, ModelRecord, ReleaseRecord
from shipyard.release.channels.ledger import load_ledger
from shipyard.release.channels.promote import gate_problems
from shipyard.release.channels.trust import trust_problems
from shipyard.release.gates.verdicts import attest_models, signed_verdicts
from shipyard.verdicts import ModelVerifyVerdict
from tests.memregistry import MemoryRegistry
from tests.unit.test_promote import manifest, promoter_on
from tests.unit.test_trust import KEY, signed_release

OCI = "application/vnd.oci.image.manifest.v1+json"


def with_model(memory: MemoryRegistry, record: ReleaseRecord, name: str = "affect-nb") -> ReleaseRecord:
    """``record`` whose cpu/svc was released with the model ``name`` (pushed under the release tag)."""
    digest = memory.put(f"acme/models/{name}", record.release, manifest(f"model {name}@{record.release}"), OCI)
    record.models[name] = ModelRecord(
        repository=f"localhost:5000/acme/models/{name}", tag=record.release, digest=digest, format="json",
        files=[ModelFileRecord("weights.json", "sha256:" + "1" * 64, 10)], size=10, source="path",
        origin=f"models/{name}", verdicts={"verify": {"passed": True, "problems": []}},
    )  # fmt: skip
    record.units["cpu/svc"].models = {name: digest}
    return record


def client_of(memory: MemoryRegistry) -> RegistryClient:
    return RegistryClient(parse_registry("localhost:5000/acme"), transport=memory.transport())


def test_a_model_needs_a_trusted_signature_and_a_signed_verify_verdict_of_the_revision() -> None:
    memory = MemoryRegistry()
    client = client_of(memory)
    record = with_model(memory, signed_release(client, memory, "20250111-aaaaaaaa"))
    model = record.models["affect-nb"]
    problems = trust_problems(client, [KEY.public], record, ["cpu/svc"])
    assert problems == [
        f"model affect-nb: {model.digest[:19]} has no signature by a trusted key",
        f"model affect-nb: no signed verify verdict of release {record.release} for {model.digest[:19]}",
    ]
    push_signature(client, "acme/models/affect-nb", model.digest, model.repository, KEY)
    attest_models(client, KEY, record, "verify", {"checks": ["model"]}, lambda event: None)
    assert trust_problems(client, [KEY.public], record, ["cpu/svc"]) == []
    held = signed_verdicts(client, [KEY.public], "acme/models/affect-nb", model.digest)["verify"]
    assert held.unit == "models/affect-nb" and held.release == record.release
    record.revision = "b" * 40  # the same model, claimed for another revision: its verdict does not count
    assert any(
        "model affect-nb: the signed verify verdict" in p
        for p in trust_problems(client, [KEY.public], record, ["cpu/svc"])
    )


def test_a_failed_model_verdict_is_never_signed_and_blocks_promotion_by_name() -> None:
    memory = MemoryRegistry()
    client = client_of(memory)
    record = with_model(memory, signed_release(client, memory, "20250111-aaaaaaaa"))
    record.models["affect-nb"].verdicts.verify = ModelVerifyVerdict(False, ["model: weights.json: digest …"])
    assert attest_models(client, KEY, record, "verify", {}, lambda event: None) == []
    assert "model affect-nb: verify failed (model: weights.json: digest …)" in gate_problems(record, ["cpu/svc"])
    record.units["cpu/svc"].models = {"affect-nb": "sha256:" + "9" * 64}  # an edited record
    assert any(
        "is not among the release's models" in p for p in trust_problems(client, [KEY.public], record, ["cpu/svc"])
    )


def test_promotion_moves_the_models_channel_tag_with_the_images_and_a_rollback_moves_it_back(tmp_path: Path) -> None:
    memory = MemoryRegistry()
    promoter = promoter_on(memory, tmp_path / "locks")
    client = client_of(memory)
    first = with_model(memory, signed_release(client, memory, "20250111-aaaaaaaa"))
    second = with_model(memory, signed_release(client, memory, "20250112-bbbbbbbb"))
    assert first.models["affect-nb"].digest != second.models["affect-nb"].digest
    assert promoter.promote(first, "stable", first.units) == 3  # two images and the model
    assert memory.tags[("acme/models/affect-nb", "stable")] == first.models["affect-nb"].digest
    promoter.promote(second, "stable", second.units)
    assert memory.tags[("acme/models/affect-nb", "stable")] == second.models["affect-nb"].digest
    entry = load_ledger(promoter.registry, "acme", "stable").entries[-1]
    assert entry.digests["models/affect-nb"] == second.models["affect-nb"].digest
    promoter.rollback("stable")
    assert memory.tags[("acme/models/affect-nb", "stable")] == first.models["affect-nb"].digest
