"""The build pipeline with an injected runner and registry: which commands, in which order, with what."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.build.pipeline import BuildContext, BuildOptions, build_release
from shipyard.events import Event
from shipyard.gitinfo import read_revision
from shipyard.project import load_project
from shipyard.release.record import load_record
from shipyard.release.registry import RegistryClient
from shipyard.runner import Completed, Runner
from shipyard.target import parse_target
from tests.conftest import make_project

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
    """Records every argv; 'builds' by writing buildx metadata with a digest derived from the tag."""

    def __init__(self) -> None:
        super().__init__()
        self.digests: dict[str, str] = {}

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:  # type: ignore[override]
        argv = [str(a) for a in argv]
        self.history.append(argv)
        if argv[:3] == ["docker", "buildx", "build"]:
            tag = argv[argv.index("--tag") + 1]
            repo = tag.split("/", 1)[1].rsplit(":", 1)[0]
            digest = "sha256:" + hashlib.sha256(manifest_for(repo)).hexdigest()
            self.digests[repo] = digest
            Path(argv[argv.index("--metadata-file") + 1]).write_text(json.dumps({"containerimage.digest": digest}))
            on_line = kwargs.get("on_line")
            if on_line:
                for line in ("#7 [runtime 2/3] COPY a b", "#7 CACHED", "#8 [runtime 3/3] RUN true", "#8 DONE 0.1s"):
                    on_line(line)
        return Completed(argv, 0, "")


def registry_handler(runner: FakeBuildx, base_digest: str):  # type: ignore[no-untyped-def]
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if "/bases/" in path and "/manifests/" in path:
            return httpx.Response(
                200,
                content=b'{"mediaType": "application/vnd.oci.image.manifest.v1+json"}',
                headers={"Docker-Content-Digest": base_digest},
            )
        if "/manifests/sha256:" in path:
            repo = path.removeprefix("/v2/").split("/manifests/")[0]
            return httpx.Response(200, content=manifest_for(repo))
        return httpx.Response(404)

    return handle


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[BuildContext, FakeBuildx, list[Event]]:
    root = make_project(tmp_path / "p", services=("affective-processing-center",), profiles=("cpu", "pc2"))
    # the wheelhouse is tested on its own; here it is already "downloaded"
    monkeypatch.setattr(
        "shipyard.build.pipeline.Wheelhouse.prepare", lambda self, lock, py, plat: (tmp_path / "w", False)
    )
    runner = FakeBuildx()
    body = b'{"mediaType": "application/vnd.oci.image.manifest.v1+json"}'
    base_digest = "sha256:" + hashlib.sha256(body).hexdigest()
    target = parse_target("localhost:5000/acme")
    registry = RegistryClient(target, transport=httpx.MockTransport(registry_handler(runner, base_digest)))
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


def test_builds_parents_first_and_children_from_the_parent_digest(ctx) -> None:  # type: ignore[no-untyped-def]
    context, runner, events = ctx
    record = build_release(context, BuildOptions(target=parse_target("localhost:5000/acme")))
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
    for argv in builds:
        tag_values = [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"]
        assert len(tag_values) == 2 and tag_values[1].split(":")[-1].startswith("inputs-")
        assert option("--cache-from", argv).startswith("type=registry,ref=localhost:5000/acme/cache/")
        assert "mode=max" in option("--cache-to", argv) and "--push" in argv
    pc2_web = next(argv for argv in builds if "/pc2/family-web:" in option("--tag", argv))
    assert "TORCH_CUDA_ARCH_LIST=8.6" in pc2_web
    assert option("--build-context", pc2_web).startswith("tools=")
    dockerfile = Path(option("--file", pc2_web)).read_text()
    parent_digest = runner.digests["acme/pc2/base-python"]
    assert f"FROM localhost:5000/acme/pc2/base-python@{parent_digest} AS runtime" in dockerfile
    unit = record.units["pc2/family-web"]
    assert unit.parent == f"localhost:5000/acme/pc2/base-python@{parent_digest}"
    assert (unit.steps, unit.cache_hits, unit.size) == (2, 1, 1014)
    assert "/bases/debian-bookworm-python@sha256:" in record.units["cpu/base-python"].parent
    saved = load_record(context.project.root / ".shipyard" / "releases" / f"{release}.json")
    assert saved.units["pc2/family-web"].digest == unit.digest
    assert [e.kind for e in events].count("unit.built") == 8


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
        build_release(context, BuildOptions(target=parse_target("localhost:5000/acme"), profiles=["pc2"]))
    first, *rest = str(err.value).splitlines()
    assert first == (
        "1 unit(s) failed (pc2/base-python); 3 skipped because they depend on a failed unit "
        "(pc2/family-web, pc2/family-ml, pc2/affective-processing-center); 0 done"
    )
    assert rest[0] == "pc2/base-python: docker buildx build failed (exit 1) at RUN pip install --no-index"
    assert "No matching distribution found for numpy" in rest[-1]
    assert not (context.project.root / ".shipyard" / "releases").exists()
