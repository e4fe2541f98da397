from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.build.buildx import BuildProgress, BuildRequest, read_metadata
from shipyard.errors import BuildError


def test_argv_is_exact() -> None:
    request = BuildRequest(
        context=Path("/p/services/svc"),
        dockerfile=Path("/p/.shipyard/rendered/cpu/svc/Dockerfile"),
        tag="localhost:5000/shipyard/cpu/svc:20250111-656873b3",
        platform="linux/amd64",
        cache_ref="localhost:5000/shipyard/cache/cpu/svc",
        metadata_file=Path("/tmp/m.json"),
        build_args={"TORCH_CUDA_ARCH_LIST": "8.9"},
        build_contexts={"wheels": Path("/w")},
        builder="fleet",
    )
    assert request.argv() == [
        "docker",
        "buildx",
        "build",
        "--builder",
        "fleet",
        "--progress",
        "plain",
        "--file",
        "/p/.shipyard/rendered/cpu/svc/Dockerfile",
        "--platform",
        "linux/amd64",
        "--build-arg",
        "TORCH_CUDA_ARCH_LIST=8.9",
        "--build-context",
        "wheels=/w",
        "--cache-from",
        "type=registry,ref=localhost:5000/shipyard/cache/cpu/svc",
        "--cache-to",
        "type=registry,ref=localhost:5000/shipyard/cache/cpu/svc,mode=max,oci-mediatypes=true,image-manifest=true",
        "--provenance=mode=max",
        "--tag",
        "localhost:5000/shipyard/cpu/svc:20250111-656873b3",
        "--metadata-file",
        "/tmp/m.json",
        "--push",
        "/p/services/svc",
    ]


def test_provenance_can_be_left_out() -> None:
    request = BuildRequest(
        context=Path("/c"),
        dockerfile=Path("/c/Dockerfile"),
        tag="r/x:t",
        platform="linux/amd64",
        cache_ref="r/cache/x",
        metadata_file=Path("/m.json"),
        provenance=None,
    )
    assert "--provenance=false" in request.argv()
    assert not any(a.startswith("--provenance=mode") for a in request.argv())


PLAIN = """\
#5 [internal] load build context
#5 DONE 0.0s
#6 [install 1/3] FROM localhost:5000/x@sha256:abc
#6 DONE 0.1s
#7 [install 2/3] COPY requirements.lock /tmp/requirements.lock
#7 CACHED
#8 [install 3/3] RUN --mount=type=bind,from=wheels,target=/wheels pip install
#8 0.512 Processing /wheels/anyio.whl
#8 DONE 3.2s
#9 [runtime 2/2] COPY --from=install /install /opt/venv
#9 CACHED
#10 exporting to image
"""


def test_progress_counts_cached_layer_steps() -> None:
    progress = BuildProgress()
    for line in PLAIN.splitlines():
        progress.feed(line)
    assert progress.build_steps == {
        "7": "COPY requirements.lock /tmp/requirements.lock",
        "8": "RUN --mount=type=bind,from=wheels,target=/wheels pip install",
        "9": "COPY --from=install /install /opt/venv",
    }
    assert progress.cache_hits == 2


def test_metadata_digest(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"containerimage.digest": "sha256:' + "a" * 64 + '"}')
    assert read_metadata(path) == "sha256:" + "a" * 64
    path.write_text("{}")
    with pytest.raises(BuildError, match="no containerimage.digest"):
        read_metadata(path)


def test_build_secrets_go_as_buildkit_secrets_by_env_name_never_their_value(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from shipyard.build.buildx import BuildRequest

    monkeypatch.setenv("HF_TOKEN", "hf_value_never_in_argv")
    request = BuildRequest(
        tmp_path, tmp_path / "Dockerfile", "r:1", "linux/amd64", "r/cache", tmp_path / "m.json", secrets=("HF_TOKEN",)
    )
    argv = request.argv()
    assert argv[argv.index("--secret") + 1] == "id=HF_TOKEN,env=HF_TOKEN"
    assert not any("hf_value_never_in_argv" in a for a in argv)


def test_progress_follows_the_export_phases() -> None:
    progress = BuildProgress()
    phases = []
    for line in [
        "#8 [install 3/3] RUN pip install",
        "#13 exporting to image",
        "#13 exporting layers 0.3s done",
        "#13 pushing layers 0.1s done",
        "#13 pushing manifest for localhost:5000/x:t@sha256:4ef9 0.0s done",
        "#14 exporting cache to registry",
        "#14 writing layer sha256:46ce 0.0s done",
    ]:
        progress.feed(line)
        phases.append(progress.phase)
    assert phases == ["building", "exporting", "exporting", "pushing", "pushing", "caching", "caching"]
    assert progress.current == "RUN pip install"
