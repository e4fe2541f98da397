from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from shipyard.build.sbom import InvalidSbom, SbomGenerator, components
from shipyard.oci.credentials import Credentials, Secret
from shipyard.runner import Completed, Runner
from tests.attested import CYCLONEDX

REF = "localhost:5000/acme/cpu/svc@sha256:" + "a" * 64


class FakeTrivy(Runner):
    def __init__(self, document: bytes | None, barrier: threading.Barrier | None = None) -> None:
        super().__init__()
        self.document = document
        self.barrier = barrier
        self.envs: list[Mapping[str, str]] = []

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:  # type: ignore[override]
        argv = [str(a) for a in argv]
        self.history.append(argv)
        self.envs.append(kwargs["env"])
        if self.barrier is not None:
            self.barrier.wait()  # every worker inside trivy at once
        if self.document is not None:
            Path(argv[argv.index("--output") + 1]).write_bytes(self.document)
        return Completed(argv, 0, "")


def test_argv_reads_the_remote_image_offline(tmp_path: Path) -> None:
    generator = SbomGenerator(Runner(), insecure=True, binary="trivy")
    assert generator.argv(REF, "linux/amd64", tmp_path / "o.json", tmp_path / "c") == [
        "trivy",
        "image",
        "--quiet",
        "--format",
        "cyclonedx",
        "--output",
        str(tmp_path / "o.json"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--skip-db-update",
        "--skip-java-db-update",
        "--offline-scan",
        "--skip-version-check",
        "--disable-telemetry",
        "--image-src",
        "remote",
        "--platform",
        "linux/amd64",
        "--insecure",
        REF,
    ]
    plain = SbomGenerator(Runner(), binary="trivy").argv(REF, "linux/amd64", tmp_path, None)
    assert "--insecure" not in plain
    assert plain[7:9] == ["--cache-backend", "memory"] and "--cache-dir" not in plain


def test_generate_returns_the_document_and_passes_credentials_by_environment() -> None:
    runner = FakeTrivy(CYCLONEDX)
    generator = SbomGenerator(runner, Credentials("bot", Secret("s3cret")), binary="trivy")
    assert generator.generate(REF, "linux/amd64") == CYCLONEDX
    assert runner.envs[0]["TRIVY_USERNAME"] == "bot" and runner.envs[0]["TRIVY_PASSWORD"] == "s3cret"
    assert not any("s3cret" in arg for arg in runner.history[0])
    output = Path(runner.history[0][runner.history[0].index("--output") + 1])
    assert not output.parent.exists(), "the temporary directory is removed"


def test_workers_running_at_once_never_share_a_cache_directory(tmp_path: Path) -> None:
    runner = FakeTrivy(CYCLONEDX, threading.Barrier(3, timeout=10))
    generator = SbomGenerator(runner, cache_root=tmp_path / "caches", workers=3, binary="trivy")
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda i: generator.generate(f"{REF[:-1]}{i}", "linux/amd64"), range(3)))
    caches = [argv[argv.index("--cache-dir") + 1] for argv in runner.history]
    assert sorted(caches) == [str(tmp_path / "caches" / str(i)) for i in range(3)]


def test_generate_refuses_no_output_and_an_empty_bom() -> None:
    with pytest.raises(InvalidSbom, match="wrote no SBOM"):
        SbomGenerator(FakeTrivy(None), binary="trivy").generate(REF, "linux/amd64")
    empty = b'{"bomFormat": "CycloneDX", "specVersion": "1.7", "components": []}'
    with pytest.raises(InvalidSbom, match="lists no components"):
        SbomGenerator(FakeTrivy(empty), binary="trivy").generate(REF, "linux/amd64")


@pytest.mark.parametrize(
    ("document", "message"),
    [(b"not json", "not JSON"), (b'{"spdxVersion": "SPDX-2.3"}', "not a CycloneDX"), (b"[]", "not a CycloneDX")],
)
def test_components_refuses_what_is_not_cyclonedx(document: bytes, message: str) -> None:
    with pytest.raises(InvalidSbom, match=message):
        components(document)


def test_components_counts() -> None:
    assert components(CYCLONEDX) == 2
