"""The build pipeline with an injected runner and registry: which commands, in which order, with what."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.build.options import BuildContext, BuildOptions
from shipyard.build.pipeline import build_release
from shipyard.build.revision import read_revision
from shipyard.config.project import load_project
from shipyard.config.registry import parse_registry
from shipyard.errors import CommandFailed
from shipyard.events import Event
from shipyard.oci.attestations import find_sbom
from shipyard.oci.client import RegistryClient
from shipyard.record import load_record
from shipyard.runner import Completed, Runner
from tests.attested import CYCLONEDX, push_like_buildx
from tests.conftest import git, make_project
from tests.memregistry import MemoryRegistry

CONFIG = b'{"config": {}}'
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()


def manifest_for(name: str) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "name": name,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG_DIGEST, "size": 14},
            "layers": [{"mediaType": "l", "digest": "sha256:" + "1" * 64, "size": 1000}],
        }
    ).encode()


class FakeBuildx(Runner):
    """Records every argv; 'builds' by pushing what buildx would (index, image, provenance) to ``mem``."""

    def __init__(self, mem: MemoryRegistry) -> None:
        super().__init__()
        self.mem = mem
        self.digests: dict[str, str] = {}
        mem.blobs[CONFIG_DIGEST] = CONFIG

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:  # type: ignore[override]
        argv = [str(a) for a in argv]
        self.history.append(argv)
        if argv[1:2] == ["image"] and "cyclonedx" in argv:  # trivy, for the SBOM
            Path(argv[argv.index("--output") + 1]).write_bytes(CYCLONEDX)
        if argv[:3] == ["docker", "buildx", "build"]:
            tags = [argv[i + 1].split("/", 1)[1] for i, a in enumerate(argv) if a == "--tag"]
            repo = tags[0].rsplit(":", 1)[0]
            provenance = "https://slsa.dev/provenance/v0.2" if "--provenance=mode=max" in argv else None
            digest = push_like_buildx(
                self.mem, repo, [t.rsplit(":", 1)[1] for t in tags], manifest_for(repo), predicate=provenance
            )
            self.digests[repo] = digest
            Path(argv[argv.index("--metadata-file") + 1]).write_text(json.dumps({"containerimage.digest": digest}))
            on_line = kwargs.get("on_line")
            if on_line:
                for line in ("#7 [runtime 2/3] COPY a b", "#7 CACHED", "#8 [runtime 3/3] RUN true", "#8 DONE 0.1s"):
                    on_line(line)
        return Completed(argv, 0, "")


def registry_handler(mem: MemoryRegistry, base_digest: str):  # type: ignore[no-untyped-def]
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "/bases/" in path and "/manifests/" in path:
            return httpx.Response(
                200,
                content=b'{"mediaType": "application/vnd.oci.image.manifest.v1+json"}',
                headers={"Docker-Content-Digest": base_digest},
            )
        return mem.handle(request)

    return handle


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[BuildContext, FakeBuildx, list[Event]]:
    # images only: what a release does with models (and what it asks the registry) is test_models_build's
    root = make_project(
        tmp_path / "p", services=("affective-processing-center",), profiles=("cpu", "pc2"), models=False
    )
    # the wheelhouse is tested on its own; here it is already "downloaded"
    monkeypatch.setattr(
        "shipyard.build.contexts.Wheelhouse.prepare", lambda self, lock, py, plat: (tmp_path / "w", False)
    )
    mem = MemoryRegistry()
    runner = FakeBuildx(mem)
    body = b'{"mediaType": "application/vnd.oci.image.manifest.v1+json"}'
    base_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    target = parse_registry("localhost:5000/acme")
    registry = RegistryClient(target, transport=httpx.MockTransport(registry_handler(mem, base_digest)))
    events: list[Event] = []
    project = load_project(root, base_override="local")
    context = BuildContext(
        project=project,
        revision=read_revision(root),
        runner=runner,
        registry=registry,
        cache_dir=tmp_path / "cache",
        emit=events.append,
    )
    return context, runner, events


def option(name: str, argv: list[str]) -> str:
    return argv[argv.index(name) + 1]


def test_builds_parents_first_and_children_from_the_parents_platform_manifest(ctx) -> None:  # type: ignore[no-untyped-def]
    context, runner, events = ctx
    record = build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme")))
    builds = [argv for argv in runner.history if argv[:3] == ["docker", "buildx", "build"]]
    tags = [option("--tag", argv) for argv in builds]
    release = context.revision.release_tag
    images = ("base-python", "family-web", "family-ml", "affective-processing-center")
    assert sorted(tags) == sorted(f"localhost:5000/acme/{p}/{i}:{release}" for p in ("cpu", "pc2") for i in images)
    parents = {"family-web": "base-python", "family-ml": "family-web", "affective-processing-center": "family-web"}
    for profile in ("cpu", "pc2"):  # parents first within each profile, whatever ran in parallel
        order = [t.split("/")[-1].split(":")[0] for t in tags if f"/{profile}/" in t]
        for child, parent in parents.items():
            assert order.index(parent) < order.index(child), (profile, order)
    for argv in builds:  # one push by the engine; the inputs tag is a manifest PUT of the same index
        tag_values = [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"]
        assert len(tag_values) == 1
        inputs = next(u for u in record.units.values() if u.ref.split("@")[0] == tag_values[0].rsplit(":", 1)[0])
        path = inputs.repository.removeprefix("localhost:5000/")
        assert runner.mem.tags[(path, "inputs-" + inputs.inputs["digest"][:40])] == inputs.digest
        assert option("--cache-from", argv).startswith("type=registry,ref=localhost:5000/acme/cache/")
        assert "mode=max" in option("--cache-to", argv) and "--push" in argv
    pc2_web = next(argv for argv in builds if "/pc2/family-web:" in option("--tag", argv))
    assert "TORCH_CUDA_ARCH_LIST=8.6" in pc2_web
    assert option("--build-context", pc2_web).startswith("tools=")
    assert f"SOURCE_DATE_EPOCH={int(context.revision.committed.timestamp())}" in pc2_web
    dockerfile = Path(option("--file", pc2_web)).read_text()
    index = runner.digests["acme/pc2/base-python"]
    parent_digest = json.loads(runner.mem.manifests[("acme/pc2/base-python", index)][0])["manifests"][0]["digest"]
    assert record.units["pc2/base-python"].image_digest == parent_digest != index
    assert f"FROM localhost:5000/acme/pc2/base-python@{parent_digest} AS runtime" in dockerfile
    unit = record.units["pc2/family-web"]
    assert unit.parent == f"localhost:5000/acme/pc2/base-python@{parent_digest}"
    assert (unit.steps, unit.cache_hits, unit.size) == (2, 1, 1014)
    assert "/bases/debian-bookworm-python@sha256:" in record.units["cpu/base-python"].parent
    saved = load_record(context.project.root / ".shipyard" / "releases" / f"{release}.json")
    assert saved.units["pc2/family-web"].digest == unit.digest
    assert [e.kind for e in events].count("unit.built") == 8


class ExportingBuildx(FakeBuildx):
    """Prints the image's export vertex as buildx does (its manifest list's digest, then DONE: pushed), then
    takes ``cache_s`` for the cache export, which fails with a registry fault for the repositories in
    ``cache_fails``."""

    def __init__(self, mem: MemoryRegistry, cache_s: float, cache_fails: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__(mem)
        self.cache_s, self.cache_fails = cache_s, cache_fails
        self.timeline: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:  # type: ignore[override]
        if list(argv[:3]) != ["docker", "buildx", "build"]:
            return super().run(argv, **kwargs)
        repo = str(argv[list(argv).index("--tag") + 1]).split("/", 1)[1].rsplit(":", 1)[0]
        with self.lock:
            self.timeline.append(("start", repo))
        done = super().run(argv, **{k: v for k, v in kwargs.items() if k != "on_line"})
        on_line = kwargs["on_line"]
        for line in (
            "#8 [runtime 3/3] RUN true", "#8 DONE 0.1s", "#9 exporting to image", "#9 exporting layers 0.1s done",
            f"#9 exporting manifest sha256:{'1' * 64} done", f"#9 exporting manifest list {self.digests[repo]} done",
            f"#9 pushing manifest for localhost:5000/{repo}@{self.digests[repo]} 0.0s done", "#9 DONE 0.2s",
            "#10 exporting cache to registry",
        ):  # fmt: skip
            on_line(line)
        time.sleep(self.cache_s)
        with self.lock:
            self.timeline.append(("end", repo))
        if repo in self.cache_fails:
            raise CommandFailed(list(argv), 1, "#10 ERROR: unexpected status from PUT request to …: 503")
        return done


def test_children_build_while_their_parent_exports_its_cache(ctx) -> None:  # type: ignore[no-untyped-def]
    context, runner, events = ctx
    slow = ExportingBuildx(runner.mem, cache_s=0.3)
    context = replace(context, runner=slow)
    record = build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), profiles=["cpu"]))
    timeline = slow.timeline
    for parent, child in (("base-python", "family-web"), ("family-web", "family-ml")):
        # the child's buildx started once the parent's image was pushed, before the parent's buildx ended
        assert timeline.index(("start", f"acme/cpu/{child}")) < timeline.index(("end", f"acme/cpu/{parent}"))
    web = record.units["cpu/family-web"]
    assert web.parent.startswith("localhost:5000/acme/cpu/base-python@sha256:")
    assert all(u.digest == slow.digests[u.repository.removeprefix("localhost:5000/")] for u in record.units.values())
    assert [e.kind for e in events].count("unit.built") == 4


def test_a_cache_export_failing_after_the_push_is_told_and_not_run_again(ctx) -> None:  # type: ignore[no-untyped-def]
    context, runner, events = ctx
    flaky = ExportingBuildx(runner.mem, cache_s=0.0, cache_fails={"acme/cpu/family-web"})
    context = replace(context, runner=flaky)
    record = build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), profiles=["cpu"]))
    builds = [argv for argv in flaky.history if argv[:3] == ["docker", "buildx", "build"]]
    assert sum(1 for argv in builds if "/cpu/family-web:" in option("--tag", argv)) == 1  # not run again
    assert record.units["cpu/family-web"].digest == flaky.digests["acme/cpu/family-web"]
    warned = [e.message for e in events if e.kind == "unit.warning"]
    assert len(warned) == 1 and warned[0].startswith("cpu/family-web: pushed sha256:")
    assert "then buildx failed after the push (#10 ERROR: unexpected status" in warned[0]


def test_failed_build_names_the_unit_and_step(ctx) -> None:  # type: ignore[no-untyped-def]
    from shipyard.errors import BuildError, CommandFailed

    context, runner, _ = ctx

    def fail(argv: Sequence[str], **kwargs: Any) -> Completed:
        if "buildx" in argv:
            kwargs["on_line"]("#9 [install 3/3] RUN pip install --no-index")
            raise CommandFailed(list(argv), 1, "ERROR: No matching distribution found for numpy")
        return Completed(list(argv), 0, "")

    runner.run = fail  # type: ignore[method-assign]
    with pytest.raises(BuildError) as err:
        build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), profiles=["pc2"]))
    first, *rest = str(err.value).splitlines()
    assert first == (
        "1 unit(s) failed (pc2/base-python); 3 skipped because they depend on a failed unit "
        "(pc2/family-web, pc2/family-ml, pc2/affective-processing-center); 0 done"
    )
    assert rest[0] == "pc2/base-python: docker buildx build failed (exit 1) at RUN pip install --no-index"
    assert "No matching distribution found for numpy" in rest[-1]
    assert not (context.project.root / ".shipyard" / "releases").exists()


def sbom_runs(runner: FakeBuildx) -> list[list[str]]:
    return [argv for argv in runner.history if argv[1:2] == ["image"] and "cyclonedx" in argv]


def test_every_pushed_unit_gets_provenance_and_an_sbom_referrer(ctx) -> None:  # type: ignore[no-untyped-def]
    context, runner, events = ctx
    record = build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), profiles=["cpu"]))
    builds = [argv for argv in runner.history if argv[:3] == ["docker", "buildx", "build"]]
    assert builds and all("--provenance=mode=max" in argv for argv in builds)
    assert sorted(argv[-1] for argv in sbom_runs(runner)) == sorted(u.ref for u in record.units.values())
    assert all(option("--platform", argv) == "linux/amd64" for argv in sbom_runs(runner))
    for key, unit in record.units.items():
        repo = unit.repository.removeprefix("localhost:5000/")
        assert unit.attestations["sbom"] == find_sbom(context.registry, repo, unit.digest), key
        assert set(unit.attestations) == {"provenance", "sbom"}
    saved = load_record(context.project.root / ".shipyard" / "releases" / f"{record.release}.json")
    assert saved.units["cpu/family-web"].attestations == record.units["cpu/family-web"].attestations
    assert [e.kind for e in events].count("unit.attested") == 4

    runner.history.clear()  # the same inputs again: every unit is reused, with the attestations it has
    again = build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), profiles=["cpu"]))
    assert runner.history == []
    assert {k: u.attestations for k, u in again.units.items()} == {k: u.attestations for k, u in record.units.items()}
    assert all(u.reused_from for u in again.units.values())


def test_an_image_without_provenance_is_rebuilt_not_reused(ctx) -> None:  # type: ignore[no-untyped-def]
    context, runner, events = ctx
    target = parse_registry("localhost:5000/acme")
    first = build_release(context, BuildOptions(target=target, profiles=["cpu"], attest=False))
    assert all(not u.attestations for u in first.units.values()) and not sbom_runs(runner)
    assert all("--provenance=false" in argv for argv in runner.history if argv[:2] == ["docker", "buildx"])
    runner.history.clear()
    second = build_release(context, BuildOptions(target=target, profiles=["cpu"]))
    assert all(not u.reused_from and u.attestations for u in second.units.values())
    started = {e.unit: e.message for e in events if e.kind == "unit.started"}
    assert started["cpu/base-python"].endswith("building (the image with these inputs has no provenance attestation)")


def test_a_failed_sbom_fails_the_build_but_keeps_the_pushed_units(ctx) -> None:  # type: ignore[no-untyped-def]
    from shipyard.errors import BuildError, CommandFailed

    context, runner, _ = ctx
    real_run = runner.run

    def trivy_fails_on_web(argv: Sequence[str], **kwargs: Any) -> Completed:
        if argv[1:2] == ["image"] and "/family-web@" in argv[-1]:
            raise CommandFailed(list(argv), 1, "FATAL image scan error")
        return real_run(argv, **kwargs)

    runner.run = trivy_fails_on_web  # type: ignore[method-assign]
    with pytest.raises(BuildError) as err:
        build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), profiles=["cpu"]))
    first, detail = str(err.value).splitlines()
    assert first == (
        "1 unit(s) pushed without their attestations (cpu/family-web); they are in the release record, "
        "and verify fails them"
    )
    assert detail.startswith("cpu/family-web: attestation failed: ")
    assert detail.endswith("trivy image exited 1: FATAL image scan error")
    saved = load_record(context.project.root / ".shipyard" / "releases" / f"{context.revision.release_tag}.json")
    assert len(saved.units) == 4 and saved.units["cpu/family-web"].attestations == {}
    assert saved.units["cpu/family-ml"].attestations, "children were built and attested all the same"


def test_events_tell_the_live_view_each_units_state(ctx) -> None:  # type: ignore[no-untyped-def]
    context, _, events = ctx
    build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), profiles=["cpu"]))
    plan = next(e for e in events if e.kind == "plan")
    assert plan.data["parents"]["cpu/family-ml"] == "cpu/family-web" and plan.data["attest"] is True
    mine = [(e.kind, e.data.get("step"), e.data.get("phase")) for e in events if e.unit == "cpu/family-web"]
    kinds = [kind for kind, _, _ in mine if kind != "build.output"]
    assert kinds[:2] == ["unit.checking", "unit.started"] and "unit.built" in kinds and "unit.attested" in kinds
    assert ("unit.step", "COPY a b", "building") in mine and ("unit.step", "RUN true", "building") in mine


def test_a_failed_unit_is_told_at_once_and_its_descendants_as_skipped(ctx) -> None:  # type: ignore[no-untyped-def]
    from shipyard.errors import BuildError, CommandFailed

    context, runner, events = ctx

    def fail(argv: Sequence[str], **kwargs: Any) -> Completed:
        if "buildx" in argv and "/family-web:" in " ".join(argv):
            raise CommandFailed(list(argv), 1, "ERROR: boom")
        return FakeBuildx.run(runner, argv, **kwargs)

    runner.run = fail  # type: ignore[method-assign]
    with pytest.raises(BuildError):
        build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), profiles=["cpu"]))
    told = {e.unit: e for e in events if e.kind in ("unit.failed", "unit.skipped")}
    assert told["cpu/family-web"].kind == "unit.failed"
    assert told["cpu/family-web"].message.startswith("[2/4] cpu/family-web: FAILED (docker buildx build failed")
    assert {k: e.data.get("because") for k, e in told.items() if e.kind == "unit.skipped"} == {
        "cpu/family-ml": "cpu/family-web",
        "cpu/affective-processing-center": "cpu/family-web",
    }
    failed_at = [e.kind for e in events].index("unit.failed")
    assert failed_at < [e.kind for e in events].index("unit.skipped")


def tags_of(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"]


def test_semver_tags_on_head_go_with_every_unit_built_or_reused(ctx) -> None:  # type: ignore[no-untyped-def]
    from shipyard.release.gates.checks import Reads, UnitImage, check_tag

    context, runner, events = ctx
    root, target = context.project.root, parse_registry("localhost:5000/acme")
    git(root, "tag", "v1.4.2")
    context.revision = read_revision(root)
    record = build_release(context, BuildOptions(target=target, profiles=["cpu"]))
    builds = [argv for argv in runner.history if argv[:3] == ["docker", "buildx", "build"]]
    assert len(builds) == 4
    for argv in builds:  # buildx pushes the release tag; the inputs tag and aliases are manifest PUTs
        assert len(tags_of(argv)) == 1
    puts = [path for method, path in runner.mem.requests if method == "PUT" and "/manifests/" in path]
    for key in record.units:
        tags = [p.rsplit("/", 1)[1] for p in puts if p.startswith(f"/v2/acme/{key}/manifests/")]
        assert tags[0].startswith("inputs-") and tags[1:3] == ["1.4.2", "1.4"], (key, tags)
    assert record.aliases == ["1.4.2", "1.4"]
    assert load_record(root / ".shipyard" / "releases" / f"{record.release}.json").aliases == ["1.4.2", "1.4"]
    assert next(e for e in events if e.kind == "plan").message.startswith(
        f"release {record.release} (also 1.4.2, 1.4):"
    )
    for key, unit in record.units.items():
        assert runner.mem.tags[(f"acme/{key}", "1.4.2")] == runner.mem.tags[(f"acme/{key}", "1.4")] == unit.digest

    # the next patch release, inputs unchanged: every unit reused, its aliases moved server-side
    git(root, "commit", "-q", "--allow-empty", "-m", "docs", date="2025-01-12T12:00:00+00:00")
    git(root, "tag", "v1.4.3")
    context.revision = read_revision(root)
    runner.history.clear()
    again = build_release(context, BuildOptions(target=target, profiles=["cpu"]))
    assert runner.history == [] and again.aliases == ["1.4.3", "1.4"]
    for key, unit in again.units.items():
        assert unit.reused_from, key  # (the fake images have no version label to say which release)
        assert runner.mem.tags[(f"acme/{key}", "1.4.3")] == runner.mem.tags[(f"acme/{key}", "1.4")] == unit.digest

    # verify's tag check: one finding per tag, an alias at an unknown digest fails on its own
    unit = again.units["cpu/family-web"]
    runner.mem.tags[("acme/cpu/family-web", "1.4")] = "sha256:" + "0" * 64
    image = UnitImage("cpu/family-web", unit, "acme/cpu/family-web", None, {}, None,  # type: ignore[arg-type]
                      aliases=tuple(again.aliases))  # fmt: skip
    reads = Reads.of(context.registry, "localhost:5000")
    findings = list(check_tag(image, reads))
    assert [(f.check, f.status, f.expected.split(" ")[0]) for f in findings] == [
        ("tag", "pass", again.release),
        ("tag", "pass", "1.4.3"),
        ("tag", "fail", "1.4"),
    ]
    # X.Y taken by a newer patch release (a manifest the registry has): no failure of this release
    newer = runner.mem.put(
        "acme/cpu/family-web", "1.4", b'{"schemaVersion": 2}', "application/vnd.oci.image.manifest.v1+json"
    )
    findings = list(check_tag(image, reads))
    assert [(f.status, f.found) for f in findings][2] == ("skip", f"1.4 moved on to {newer}")
    runner.mem.tags[("acme/cpu/family-web", "1.4.3")] = newer  # the exact version must never move
    findings = list(check_tag(image, reads))
    assert [f.status for f in findings] == ["pass", "fail", "skip"]


def test_a_dirty_tree_pushes_no_semver_tag_and_says_so(ctx) -> None:  # type: ignore[no-untyped-def]
    context, runner, events = ctx
    root = context.project.root
    git(root, "tag", "v1.4.2")
    (root / "notes.txt").write_text("work in progress")
    context.revision = read_revision(root, allow_dirty=True)
    record = build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), profiles=["cpu"]))
    builds = [argv for argv in runner.history if argv[:3] == ["docker", "buildx", "build"]]
    assert builds and all(len(tags_of(argv)) == 1 for argv in builds)
    assert record.aliases == [] and "-dirty-" in record.release
    assert not [tag for _, tag in runner.mem.tags if tag in ("1.4.2", "1.4")]
    told = [e.message for e in events if e.kind == "aliases.skipped"]
    assert told == ["tag v1.4.2 on HEAD not applied: the tree is dirty (commit, then build again)"]


def test_a_no_op_release_asks_the_registry_for_nothing_twice(ctx) -> None:  # type: ignore[no-untyped-def]
    """A reused unit: its inputs tag, its platform manifest, its config, its SBOM referrers and its
    signature, each once; the release tag PUT; the provenance is the one its index lists."""
    from collections import Counter

    from shipyard.oci.signing import SigningKey

    context, runner, _ = ctx
    context.signer = SigningKey.generate()
    target = parse_registry("localhost:5000/acme")
    build_release(context, BuildOptions(target=target, profiles=["cpu"]))
    mem: MemoryRegistry = runner.mem
    mem.requests.clear()
    context.registry = RegistryClient(target, transport=context.registry._http._transport)  # a new process
    again = build_release(context, BuildOptions(target=target, profiles=["cpu"]))
    assert all(u.reused_from for u in again.units.values())
    reads = Counter((m, p) for m, p in mem.requests if m == "GET" and "/sha256:" in p)
    assert [r for r, n in reads.items() if n > 1] == [], "content by digest is read once"
    per_unit = len([r for r in mem.requests if "/bases/" not in r[1]]) / len(again.units)
    assert per_unit <= 8, mem.requests
    attestation_reads = [p for m, p in mem.requests if m == "GET" and "/blobs/" in p]
    assert len(attestation_reads) <= 2 * len(again.units), "no provenance statement is read for a reused unit"


def test_no_reuse_is_the_reason_it_gives(ctx) -> None:  # type: ignore[no-untyped-def]
    context, runner, events = ctx
    target = parse_registry("localhost:5000/acme")
    build_release(context, BuildOptions(target=target, profiles=["cpu"]))
    events.clear()
    build_release(context, BuildOptions(target=target, profiles=["cpu"], reuse=False))
    started = [e.message for e in events if e.kind == "unit.started"]
    assert len(started) == 4 and all(m.endswith("building (--no-reuse)") for m in started), started


def test_no_attest_still_signs_every_unit(ctx) -> None:  # type: ignore[no-untyped-def]
    from shipyard.oci.cosign import verified_signers
    from shipyard.oci.signing import SigningKey

    context, runner, _ = ctx
    context.signer = SigningKey.generate()
    record = build_release(context, BuildOptions(target=parse_registry("localhost:5000/acme"), attest=False))
    assert not sbom_runs(runner)
    assert all("--provenance=false" in argv for argv in runner.history if argv[:2] == ["docker", "buildx"])
    for key, unit in record.units.items():
        assert set(unit.attestations) == {"signature"}, key
        repo = unit.repository.removeprefix("localhost:5000/")
        assert verified_signers(context.registry, repo, unit.digest, [context.signer.public]), key
