"""Attach the attestations (provenance, SBOM) and the signature to pushed units in a pool of their own,
off the DAG's critical path: a unit's children build while Trivy reads it. A failed attestation fails the
build at the end; the image stays pushed and in the release record."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import RegistryError, ShipyardError
from ..events import Emit, Event
from ..oci.attestations import (
    find_provenance,
    find_sbom,
    image_platforms,
    listed_provenance,
    push_sbom,
    sbom_subject,
)
from ..oci.client import RegistryClient
from ..oci.cosign import push_signature, signature_tag
from ..oci.signing import SigningKey
from .sbom import InvalidSbom, components

Generate = Callable[[str, str], bytes]  # (ref by digest, platform) -> CycloneDX JSON


@dataclass(frozen=True)
class Pushed:
    key: str
    repository: str  # path inside the registry
    ref: str  # host/repository@digest
    digest: str
    platform: str
    reused: bool = False  # an image pushed by an earlier release, found by its inputs


class Attacher:
    def __init__(
        self,
        registry: RegistryClient,
        generate: Generate | None,
        emit: Emit,
        jobs: int,
        *,
        signer: SigningKey | None = None,
        lookups: int = 8,
    ) -> None:
        """``generate`` None: no provenance or SBOM is looked for or made, the units are only signed."""
        self.registry, self.generate, self.emit, self.signer = registry, generate, emit, signer
        self._pool = ThreadPoolExecutor(max_workers=max(1, jobs, lookups), thread_name_prefix="attest")
        self._generating = threading.Semaphore(max(1, jobs))  # Trivy processes, beside the builds
        self._pending: dict[str, Future[dict[str, str]]] = {}

    def submit(self, pushed: Pushed) -> None:
        self._pending[pushed.key] = self._pool.submit(self._attach, pushed)

    def wait(self) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
        """Every submitted unit's attestations (kind -> manifest digest), and the failures by unit."""
        done: dict[str, dict[str, str]] = {}
        failed: dict[str, str] = {}
        try:
            for key, future in self._pending.items():
                error = future.exception()
                if error is None:
                    done[key] = future.result()
                elif isinstance(error, ShipyardError | InvalidSbom):
                    failed[key] = f"{key}: attestation failed: {error}"
                else:
                    raise error
        finally:
            self._pool.shutdown(wait=True)
        return done, failed

    def _attach(self, pushed: Pushed) -> dict[str, str]:
        started = time.monotonic()
        attached: dict[str, str] = {}
        what = "unattested"
        if self.generate is not None:
            attached, what = self._attestations(pushed, self.generate)
        if self.signer is not None:  # a reused image keeps its signature: one by this key is not added twice
            added = push_signature(
                self.registry, pushed.repository, pushed.digest, pushed.ref.split("@")[0], self.signer
            )
            signature = self.registry.head_digest(pushed.repository, signature_tag(pushed.digest))
            assert signature is not None
            attached["signature"] = signature
            what += f", {'signed' if added else 'signature present'} ({self.signer.public.key_id[:19]}…)"
        self.emit(Event("unit.attested", f"{pushed.key}: {what} in {time.monotonic() - started:.1f}s", unit=pushed.key))
        return attached

    def _attestations(self, pushed: Pushed, generate: Generate) -> tuple[dict[str, str], str]:
        """The provenance and the SBOM of every platform in the unit's index (kinds ``provenance`` and
        ``sbom`` for the primary platform, ``provenance@<os/arch>`` and ``sbom@<os/arch>`` for the others)."""
        index = self.registry.manifest(pushed.repository, pushed.digest)
        if index is None:
            raise RegistryError(f"{pushed.ref} is not in the registry")
        listed = image_platforms(index)
        platforms = [pushed.platform, *sorted(p for p in listed if p != pushed.platform)]
        attached: dict[str, str] = {}
        told = []
        for platform in platforms:
            image = self.registry.for_platform(pushed.repository, index, platform)
            suffix, shown = ("", "") if platform == pushed.platform else (f"@{platform}", f" {platform}")
            known = listed_provenance(index, image.digest) if pushed.reused else None
            provenance = known or find_provenance(self.registry, pushed.repository, index, image.digest).manifest
            subject = sbom_subject(pushed.digest, image.digest, len(listed) > 1)
            sbom = find_sbom(self.registry, pushed.repository, subject)
            if sbom is not None:
                what = f"SBOM{shown} present {sbom[:19]}"
            else:
                with self._generating:
                    document = generate(pushed.ref, platform)
                described = f"CycloneDX SBOM of {pushed.key}" + (f" ({platform})" if len(listed) > 1 else "")
                annotations = {"org.opencontainers.image.description": described}
                of = index if subject == index.digest else image
                sbom = push_sbom(self.registry, pushed.repository, of, document, annotations)
                what = f"SBOM{shown} {sbom[:19]} ({components(document)} components)"
            attached[f"provenance{suffix}"], attached[f"sbom{suffix}"] = provenance, sbom
            told.append(f"provenance{shown} {provenance[:19]}, {what}")
        return attached, "; ".join(told)
