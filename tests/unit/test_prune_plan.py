"""The prune plan from an inventory in memory: what is kept and why, the delete order, the bytes freed; and
what the inventory reads."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest

from shipyard.errors import ConfigError, PruneRefused
from shipyard.oci.client import Manifest
from shipyard.record import ModelFileRecord, ModelRecord, ReleaseRecord
from shipyard.release.channels.ledger import Entry, Ledger
from shipyard.release.deploy.deployments import Deployment, DeploymentLedger
from shipyard.release.retention.inventory import TOMBSTONE_TYPE, Inventory, Node, take_inventory
from shipyard.release.retention.plan import Rules, kind_of, leaves_first, make_plan

NS = "acme"
SVC, FAM = f"{NS}/cpu/app", f"{NS}/cpu/family"
INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE = "application/vnd.oci.image.manifest.v1+json"


def d(name: str) -> str:
    return "sha256:" + (name.encode().hex() * 64)[:64]


class World:
    """An inventory built release by release, as the registry would hold it."""

    def __init__(self) -> None:
        self.inv = Inventory(NS)

    def node(self, repo: str, name: str, *, children: tuple[str, ...] = (), blobs: int = 0, **kw: str) -> str:
        digest = d(name)
        blob_list = ((d(name + "-layer"), blobs),) if blobs else ()
        media = INDEX if children else IMAGE
        self.inv.nodes[(repo, digest)] = Node(repo, digest, media, 100, children, blob_list, kw.get("artifact", ""))
        return digest

    def tag(self, repo: str, tag: str, digest: str) -> None:
        self.inv.tags.setdefault(repo, {})[tag] = digest

    def image(self, repo: str, name: str, *tags: str, layer: int = 1000) -> str:
        """An index (platform + attestation manifest) with a signature, attestation and SBOM referrer."""
        platform = self.node(repo, f"{name}-amd64", blobs=layer)
        attestation = self.node(repo, f"{name}-att", blobs=10)
        index = self.node(repo, name, children=(platform, attestation))
        hexd = index[7:]
        sbom = self.node(repo, f"{name}-sbom", blobs=20)
        self.tag(repo, f"sha256-{hexd}", self.node(repo, f"{name}-referrers", children=(sbom,)))
        self.tag(repo, f"sha256-{hexd}.sig", self.node(repo, f"{name}-sig", blobs=5))
        self.tag(repo, f"sha256-{hexd}.att", self.node(repo, f"{name}-vsa", blobs=5))
        self.tag(repo, f"inputs-{name}", index)
        for tag in tags:
            self.tag(repo, tag, index)
        return index

    def release(self, day: int, *, family: str | None = None) -> tuple[str, dict[str, str]]:
        name = f"202501{day:02d}-{day:08x}"
        svc = self.image(SVC, f"svc{day}", name, layer=1000 * day)
        fam = family or self.image(FAM, f"fam{day}")
        self.tag(FAM, name, fam)
        return name, {"cpu/app": svc, "cpu/family": fam}

    def promote(self, channel: str, release: str, digests: dict[str, str], action: str = "promote") -> None:
        ledger = self.inv.channels.setdefault(channel, Ledger(channel))
        ledger.entries.append(Entry(action, release, dict(digests), {}, state="complete"))  # type: ignore[arg-type]
        self.tag(SVC, channel, digests["cpu/app"])
        self.tag(FAM, channel, digests["cpu/family"])


def five() -> tuple[World, list[tuple[str, dict[str, str]]]]:
    w = World()
    r = [w.release(1)]
    r.append(w.release(2, family=r[0][1]["cpu/family"]))  # family reused server-side
    r += [w.release(3), w.release(4), w.release(5)]
    return w, r


def test_tag_kinds() -> None:
    assert kind_of("20250111-656873b3") == "release"
    assert kind_of("20250111-656873b3-dirty-0a1b2c3d") == "release"
    assert kind_of("1.4.2") == kind_of("1.4") == "alias"
    assert kind_of("inputs-" + "a" * 40) == "inputs"
    assert kind_of("sha256-" + "a" * 64 + ".sig") == kind_of("sha256-" + "a" * 64) == "derived"
    assert kind_of("stable") == kind_of("latest") == "other"


def test_keeps_newest_and_channels_and_deletes_the_rest_with_what_hangs_on_it() -> None:
    w, r = five()
    w.promote("stable", *r[0])
    plan = make_plan(w.inv, Rules(keep=2))
    assert plan.kept == {r[4][0]: ["newest"], r[3][0]: ["newest"], r[0][0]: ["ledger of stable", "channel stable"]}
    assert plan.removed == [r[2][0], r[1][0]]
    deleted = {n.digest for n in plan.deletions}
    # r3: the service's and the family's index, their children, referrers, SBOM, signature, attestation
    assert {d("svc3"), d("svc3-amd64"), d("svc3-att"), d("svc3-sbom"), d("svc3-sig"), d("svc3-vsa")} <= deleted
    assert d("fam3") in deleted and d("fam1") not in deleted  # r2's family is r1's (kept by stable)
    assert d("svc2") in deleted
    # r2's release tag on the family stays only as a tag to take away: its digest is r1's, which stays
    assert plan.untag == [(FAM, r[1][0])]
    assert not any(n.digest in (d("svc1"), d("svc4"), d("svc5"), d("svc1-sbom")) for n in plan.deletions)


def test_delete_order_is_leaves_first_and_never_touches_what_is_kept() -> None:
    w, r = five()
    plan = make_plan(w.inv, Rules(keep=1))
    position = {n.key: i for i, n in enumerate(plan.deletions)}
    for node in plan.deletions:
        for child in node.children:
            assert position[(node.repository, child)] < position[node.key], "a manifest before what it lists"
    kept_svc5 = {d("svc5"), d("svc5-amd64"), d("svc5-att"), d("svc5-sbom"), d("svc5-referrers")}
    assert not kept_svc5 & {n.digest for n in plan.deletions}


def test_a_child_shared_with_a_kept_index_is_kept() -> None:
    w = World()
    shared = w.node(SVC, "shared-amd64", blobs=500)
    old = w.node(SVC, "old", children=(shared,))
    new = w.node(SVC, "new", children=(shared,))
    w.tag(SVC, "20250101-00000001", old)
    w.tag(SVC, "20250102-00000002", new)
    plan = make_plan(w.inv, Rules(keep=1))
    assert [n.digest for n in plan.deletions] == [old]
    assert plan.bytes_freed == 100  # only the old index's own bytes: the layer is still used


def test_bytes_freed_counts_unique_blobs_no_manifest_left_references() -> None:
    w = World()
    a = w.node(SVC, "a", blobs=1000)
    b = w.node(SVC, "b", blobs=2000)
    w.tag(SVC, "20250101-00000001", a)
    w.tag(SVC, "20250102-00000002", b)
    # the build cache repository (never pruned) references a's layer: it stays
    cache = f"{NS}/cache/cpu/app"
    w.inv.nodes[(cache, d("cache"))] = Node(cache, d("cache"), INDEX, 50, (), ((d("a-layer"), 1000),))
    w.tag(cache, "buildcache", d("cache"))
    plan = make_plan(w.inv, Rules(keep=1))
    assert [n.digest for n in plan.deletions] == [a]
    assert plan.bytes_freed == 100
    assert plan.manifests_before == 3 and plan.manifests_after == 2
    assert plan.bytes_before == 100 + 1000 + 100 + 2000 + 50


def test_ledger_windows_and_deployments_keep_releases() -> None:
    w, r = five()
    w.promote("canary", *r[1])
    w.promote("canary", *r[2])
    w.promote("canary", *r[3])
    deployed = {"app": f"reg.example/{SVC}@{r[0][1]['cpu/app']}"}
    w.inv.deployments["mainpc"] = DeploymentLedger("mainpc", [Deployment(r[0][0], "x", deployed, {}, {}, {})])
    plan = make_plan(w.inv, Rules(keep=1, ledger_entries=2))
    assert plan.kept[r[0][0]] == ["deployed on mainpc"]
    assert plan.kept[r[2][0]] == ["ledger of canary"]
    assert plan.kept[r[3][0]] == ["ledger of canary", "channel canary"]
    assert plan.removed == [r[1][0]]


def test_a_channel_that_would_lose_its_rollback_target_is_refused() -> None:
    w, r = five()
    w.promote("stable", *r[0])
    for _ in range(3):  # the same release promoted again and again: r1 drops out of a short window
        w.promote("stable", *r[2])
    with pytest.raises(PruneRefused, match=r"channel stable would lose its rollback target 20250101-00000001 .*"
                       r"entry 1 of 4 .* --ledger-entries 4 or more"):  # fmt: skip
        make_plan(w.inv, Rules(keep=1, ledger_entries=2))
    assert r[0][0] in make_plan(w.inv, Rules(keep=1, ledger_entries=4)).kept


def test_older_than_never_removes_what_the_rules_keep() -> None:
    w, r = five()
    w.promote("stable", *r[0])
    now = datetime(2025, 1, 10, tzinfo=UTC)
    plan = make_plan(w.inv, Rules(keep=1, older_than_days=7, now=now))  # r3 (Jan 3) and newer are younger
    assert plan.removed == [r[1][0]]
    assert "younger than 7 days" in plan.kept[r[2][0]] and plan.kept[r[0][0]] == ["ledger of stable", "channel stable"]


def test_tombstones_left_by_a_killed_run_are_deleted_and_never_count_as_releases() -> None:
    w, r = five()
    tomb = w.node(FAM, "tomb", blobs=3, artifact=TOMBSTONE_TYPE)
    w.tag(FAM, "20250102-00000002", tomb)  # a killed run moved r2's family tag onto its tombstone
    plan = make_plan(w.inv, Rules(keep=5))
    assert tomb in {n.digest for n in plan.deletions}
    assert plan.untag == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (Rules(keep=0), "--keep 0: keep at least 1 release"),
        (Rules(ledger_entries=0), "--ledger-entries 0: keep at least the last entry"),
        (Rules(older_than_days=-1), "--older-than -1: expected a number of days"),
    ],
)
def test_bad_rules_are_config_errors(rules: Rules, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_plan(Inventory(NS), rules)


def test_leaves_first_survives_a_cycle() -> None:
    a = Node(SVC, d("a"), INDEX, 1, (d("b"),))
    b = Node(SVC, d("b"), INDEX, 1, (d("a"),))
    assert {n.digest for n in leaves_first([a, b])} == {d("a"), d("b")}


# --- models: ModelPack artifacts in <namespace>/models/<name>, released like images ---------------------

BERT = f"{NS}/models/bert"
MODEL = "application/vnd.cncf.model.manifest.v1+json"


def model(w: World, name: str, *tags: str, repo: str = BERT, size: int = 5000) -> str:
    """A ModelPack manifest (one layer per file) with its signature and verdict attestation tags."""
    digest = w.node(repo, name, blobs=size, artifact=MODEL)
    w.tag(repo, f"sha256-{digest[7:]}.sig", w.node(repo, f"{name}-sig", blobs=5))
    w.tag(repo, f"sha256-{digest[7:]}.att", w.node(repo, f"{name}-vsa", blobs=5))
    for tag in tags:
        w.tag(repo, tag, digest)
    return digest


def with_models() -> tuple[World, list[tuple[str, dict[str, str]]], dict[str, str]]:
    """five() with the model bert in every release: the same files in r1 and r2 (one digest, two release
    tags), new in r3, new in r4 and the same again in r5."""
    w, r = five()
    names = [name for name, _ in r]
    models = {"m1": model(w, "m1", names[0], names[1]), "m3": model(w, "m3", names[2])}
    models["m4"] = model(w, "m4", names[3], names[4])
    return w, r, models


def deleted(plan_deletions: list[Node]) -> set[str]:
    return {n.digest for n in plan_deletions}


def test_a_release_keeps_its_model_and_a_removed_one_takes_its_model_signature_and_verdicts_along() -> None:
    w, r, m = with_models()
    plan = make_plan(w.inv, Rules(keep=2))
    gone = deleted(plan.deletions)
    assert {m["m1"], d("m1-sig"), d("m1-vsa"), m["m3"], d("m3-sig"), d("m3-vsa")} <= gone
    assert not {m["m4"], d("m4-sig"), d("m4-vsa")} & gone  # r4 and r5 are kept, both with m4
    assert all((repo, tag) != (BERT, r[3][0]) for repo, tag in plan.untag)
    # the model's repository is one more of the release: its images and models told apart
    (r5,) = [release for release in plan.releases if release.name == r[4][0]]
    assert r5.models == {"bert": m["m4"]} and set(r5.images) == {SVC, FAM}
    # what is deleted in the model repository goes leaves first too, and the blobs of m1 and m3 are freed
    assert plan.bytes_freed >= 2 * 5000


def test_a_model_a_target_runs_stays_though_its_releases_go_and_only_their_tags_are_taken_away() -> None:
    w, r, m = with_models()
    # a target still runs m1 under a release prune knows nothing of any more (its images were pruned)
    ref = f"reg.example/{BERT}@{m['m1']}"
    running = Deployment("20241231-0000dead", "x", {}, {}, {}, {}, state="complete", models={"bert": ref})
    w.inv.deployments["mainpc"] = DeploymentLedger("mainpc", [running])
    plan = make_plan(w.inv, Rules(keep=2))
    assert plan.removed == [r[2][0], r[1][0], r[0][0]]
    gone = deleted(plan.deletions)
    assert not {m["m1"], d("m1-sig"), d("m1-vsa")} & gone
    assert m["m3"] in gone
    assert [(repo, tag) for repo, tag in plan.untag if repo == BERT] == [(BERT, r[0][0]), (BERT, r[1][0])]


def test_a_channel_ledger_entry_keeps_the_model_digest_it_names() -> None:
    w, r, m = with_models()
    ledger = w.inv.channels.setdefault("stable", Ledger("stable"))
    # an entry of a release whose tags are gone from the registry: only its model digest is still there
    entry = Entry("promote", "20241230-0000beef", {"models/bert": m["m3"]}, {}, state="complete")
    ledger.entries.append(entry)
    plan = make_plan(w.inv, Rules(keep=2))
    gone = deleted(plan.deletions)
    assert not {m["m3"], d("m3-sig"), d("m3-vsa")} & gone
    assert m["m1"] in gone
    assert (BERT, r[2][0]) in plan.untag


def test_a_kept_record_keeps_its_models_by_digest_whatever_they_are_tagged() -> None:
    """A ``from`` model the build could not tag under the release: the record names it, in another model's
    repository, by digest; that artifact's only release tag is a removed release's."""
    w, r, m = with_models()
    record = ReleaseRecord(r[4][0], "f" * 40, "2025-01-05T12:00:00Z", f"reg.example/{NS}")
    files = [ModelFileRecord("model.onnx", d("m1-layer"), 5000)]
    record.models["bert-copy"] = ModelRecord(f"reg.example/{BERT}", "", m["m1"], "onnx", files, 5000, "from", "x")
    w.inv.records[r[4][0]] = record
    plan = make_plan(w.inv, Rules(keep=2))
    gone = deleted(plan.deletions)
    assert not {m["m1"], d("m1-sig"), d("m1-vsa")} & gone
    assert {(BERT, r[0][0]), (BERT, r[1][0])} <= set(plan.untag)
    # without the record, nothing holds m1
    del w.inv.records[r[4][0]]
    assert m["m1"] in deleted(make_plan(w.inv, Rules(keep=2)).deletions)


def test_a_repository_of_models_without_release_tags_is_never_touched() -> None:
    w, _, _ = with_models()
    upstream = f"{NS}/models/upstream"
    model(w, "up", "v1", repo=upstream)
    plan = make_plan(w.inv, Rules(keep=1))
    assert not [n for n in plan.deletions if n.repository == upstream]


class Registry:
    """Just what ``take_inventory`` reads: tags, a tag's digest, a manifest by digest (tagged or not)."""

    def __init__(self) -> None:
        self.manifests: dict[tuple[str, str], Manifest] = {}
        self.tag_map: dict[tuple[str, str], str] = {}

    def push(self, repo: str, document: dict[str, object], *tags: str) -> str:
        raw = json.dumps(document, sort_keys=True).encode()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        self.manifests[(repo, digest)] = Manifest(digest, IMAGE, raw)
        for tag in tags:
            self.tag_map[(repo, tag)] = digest
        return digest

    def tags(self, repo: str) -> list[str]:
        return sorted(tag for r, tag in self.tag_map if r == repo)

    def head_digest(self, repo: str, tag: str) -> str | None:
        return self.tag_map.get((repo, tag))

    def manifest(self, repo: str, reference: str) -> Manifest | None:
        return self.manifests.get((repo, self.tag_map.get((repo, reference), reference)))


def test_the_inventory_reads_what_the_records_name_by_digest_though_no_tag_is_on_it() -> None:
    """A model a kept release's record names, whose only release tag an earlier prune took away: distribution
    lists it nowhere, but its digest is known, and so is that its signature and attestation are needed."""
    reg = Registry()
    layer = {"mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": d("weights"), "size": 4000}
    untagged = reg.push(BERT, {"artifactType": MODEL, "layers": [layer]})
    reg.push(BERT, {"layers": [], "note": "signature"}, f"sha256-{untagged[7:]}.sig")
    reg.push(BERT, {"layers": [], "note": "attestation"}, f"sha256-{untagged[7:]}.att")
    newest = reg.push(BERT, {"artifactType": MODEL, "layers": []}, "20250105-00000005")
    record = ReleaseRecord("20250105-00000005", "f" * 40, "2025-01-05T12:00:00Z", f"reg.example/{NS}")
    files = [ModelFileRecord("model.onnx", d("weights"), 4000)]
    for name, digest in (("bert", newest), ("bert-copy", untagged)):
        record.models[name] = ModelRecord(f"reg.example/{BERT}", "", digest, "onnx", files, 4000, "from", "x")
    for_records = {record.release: record}
    inventory = take_inventory(reg, NS, [BERT], for_records)  # type: ignore[arg-type]
    assert (BERT, untagged) in inventory.nodes and inventory.nodes[(BERT, untagged)].artifact_type == MODEL
    plan = make_plan(inventory, Rules(keep=1))
    assert plan.deletions == []
    # with no record to name it, it is invisible again: its signature and attestation would go
    plan = make_plan(take_inventory(reg, NS, [BERT]), Rules(keep=1))  # type: ignore[arg-type]
    assert len(plan.deletions) == 2 and untagged not in {n.digest for n in plan.deletions}
