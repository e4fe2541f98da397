"""A small OCI distribution API client: manifests, blobs and tags, no layer pulls.

Anonymous, basic and bearer-token (``WWW-Authenticate: Bearer realm=…``, as GHCR does)
authentication. Transient failures are retried as ``retry.RetryPolicy`` says (backoff with
jitter, bounded attempts and time, ``Retry-After`` honoured); 401/403/404 and digest
mismatches are answers and are not.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ..errors import RegistryError
from .auth import Auth
from .credentials import Credentials
from .reference import RegistryNamespace
from .retry import RETRYABLE_STATUS, RetryPolicy, Transient, retry_after_seconds

MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
INDEX_TYPES = MANIFEST_TYPES[:2]
SMALL_BLOB = 1 << 20  # blobs up to this size (configs, statements, ledgers) are kept once read
CHUNK = 1 << 20  # what a streamed upload or a hashed download holds at a time


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def compressed_size(self) -> int:
        """Layers plus config, as stored in the registry (single-platform manifests)."""
        doc = self.json
        return int(doc["config"]["size"]) + sum(int(layer["size"]) for layer in doc.get("layers", []))


class RegistryClient:
    def __init__(
        self,
        target: RegistryNamespace,
        credentials: Credentials | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.target = target
        self.policy = policy or RetryPolicy.from_env()
        # A plain-HTTP loopback registry needs no TLS context, and no proxy or .netrc from the
        # environment (reading those costs ~30-60 ms per process, a tenth of a no-op release).
        local = target.is_local
        self._http = httpx.Client(
            base_url=target.api_base,
            transport=transport,
            timeout=self.policy.timeout_s,
            verify=not local,
            trust_env=not local,
        )
        self._auth = Auth(self._http, target.host, credentials)
        self._sleep = sleep
        self._lock = threading.Lock()
        self.retried = 0  # attempts that failed transiently and were tried again, over the client's life
        # Content by digest never changes: a manifest or small blob read (or written) once is not
        # fetched again by this client (a no-op release asks for each index two or three times).
        self._manifests: dict[tuple[str, str], Manifest] = {}
        self._blobs: dict[tuple[str, str], bytes] = {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -----------------------------------------------------------
    def _send(self, method: str, url: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        def once() -> httpx.Response:
            try:
                response = self._http.request(method, url, headers={**(headers or {}), **self._auth.header()}, **kwargs)
                if response.status_code == 401 and self._auth.answer(response):
                    response = self._http.request(
                        method, url, headers={**(headers or {}), **self._auth.header()}, **kwargs
                    )
            except httpx.TimeoutException as exc:
                raise Transient(f"no answer within {self.policy.timeout_s:g} s ({type(exc).__name__})") from None
            except httpx.TransportError as exc:
                raise Transient(f"{type(exc).__name__}: {exc or 'connection failed'}") from None
            if response.status_code in RETRYABLE_STATUS:
                hint = retry_after_seconds(response.headers.get("Retry-After"))
                after = f", Retry-After {hint:g} s" if hint is not None else ""
                raise Transient(f"HTTP {response.status_code}{after}", retry_after=hint)
            return response

        retrying = self.policy.retrying(sleep=self._sleep)
        started = time.monotonic()
        try:
            return retrying(once)
        except Transient as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            raise RegistryError(
                f"registry {self.target.host}: {method} {_path_of(url)} failed {tries} time(s) in "
                f"{time.monotonic() - started:.1f} s, giving up (last: {exc.what})"
            ) from None
        finally:
            failed = retrying.statistics.get("attempt_number", 1) - 1
            if failed:
                with self._lock:
                    self.retried += failed

    # --- API -----------------------------------------------------------------
    def ping(self) -> None:
        response = self._send("GET", "/v2/")
        if response.status_code == 401:
            raise RegistryError(f"registry {self.target.host} refused the credentials (HTTP 401)")
        if response.status_code != 200:
            raise RegistryError(f"registry {self.target.host}: GET /v2/ answered HTTP {response.status_code}")

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest (or index) at a tag or digest; None when it does not exist."""
        known = self._manifests.get((repository, reference))
        if known is not None:
            return known
        response = self._send(
            "GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code == 404:
            return None
        self._raise_for(response, f"manifest {repository}:{reference}")
        digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        header = response.headers.get("Docker-Content-Digest")
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"registry {self.target.host}: manifest {repository}@{reference} has digest {digest}")
        if header and header != digest:
            raise RegistryError(
                f"registry {self.target.host}: {repository}:{reference}: header digest {header} "
                f"does not match the content ({digest})"
            )
        media_type = json.loads(response.content).get("mediaType") or response.headers.get("Content-Type", "")
        found = Manifest(digest=digest, media_type=media_type, raw=response.content)
        self._manifests[(repository, digest)] = found
        return found

    def head_digest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points at, from a HEAD request's Docker-Content-Digest (no body)."""
        response = self._send(
            "HEAD", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
        )
        if response.status_code == 404:
            return None
        self._raise_for(response, f"manifest {repository}:{reference}")
        digest = response.headers.get("Docker-Content-Digest")
        return digest if digest else self.resolve(repository, reference)

    def resolve(self, repository: str, reference: str) -> str | None:
        found = self.manifest(repository, reference)
        return found.digest if found else None

    def image_manifest(self, repository: str, reference: str, platform: str) -> Manifest | None:
        """The single-platform manifest, following an index to ``platform`` (os/arch)."""
        found = self.manifest(repository, reference)
        return None if found is None else self.for_platform(repository, found, platform)

    def for_platform(self, repository: str, found: Manifest, platform: str) -> Manifest:
        """``found`` itself, or the entry of an index for ``platform``, without fetching ``found`` again."""
        if not found.is_index:
            return found
        os_name, _, arch = platform.partition("/")
        for entry in found.json.get("manifests", []):
            plat = entry.get("platform", {})
            if plat.get("os") == os_name and plat.get("architecture") == arch:
                chosen = self.manifest(repository, entry["digest"])
                if chosen is not None:
                    return chosen
        raise RegistryError(f"{repository}@{found.digest}: no manifest for platform {platform} in the index")

    def blob(self, repository: str, digest: str) -> bytes:
        known = self._blobs.get((repository, digest))
        if known is not None:
            return known
        response = self._send("GET", f"/v2/{repository}/blobs/{digest}", follow_redirects=True)
        self._raise_for(response, f"blob {repository}@{digest}")
        if "sha256:" + hashlib.sha256(response.content).hexdigest() != digest:
            raise RegistryError(f"registry {self.target.host}: blob {repository}@{digest} does not match its digest")
        if len(response.content) <= SMALL_BLOB:
            self._blobs[(repository, digest)] = response.content
        return response.content

    def config_of(self, repository: str, manifest: Manifest) -> dict[str, Any]:
        """The image config blob of a single-platform manifest already in hand."""
        config: dict[str, Any] = json.loads(self.blob(repository, manifest.json["config"]["digest"]))
        return config

    def tags(self, repository: str) -> list[str]:
        """Every tag of the repository, following the ``Link`` header when the registry pages the list."""
        found: list[str] = []
        url: str | None = f"/v2/{repository}/tags/list"
        while url:
            response = self._send("GET", url)
            if response.status_code == 404:
                return found
            self._raise_for(response, f"tags of {repository}")
            found += list(response.json().get("tags") or [])
            url = next_link(response.headers.get("Link", ""))
        return found

    def catalog(self, page_size: int = 1000) -> list[str]:
        """Every repository the registry lists (``/v2/_catalog``), page by page as its ``Link`` header says.

        Distribution refuses ``n`` above 1000; GHCR has no catalog at all (HTTP 404: a RegistryError)."""
        names: list[str] = []
        url: str | None = f"/v2/_catalog?n={page_size}"
        while url:
            response = self._send("GET", url)
            self._raise_for(response, "the repository catalog")
            names += list(response.json().get("repositories") or [])
            url = next_link(response.headers.get("Link", ""))
        return names

    def delete_manifest(self, repository: str, digest: str) -> bool:
        """DELETE a manifest by digest (every tag on it goes with it); False when it was already gone.

        Distribution answers 405 when its config does not enable deletes: a RegistryError that says so."""
        self.forget(repository, digest)
        response = self._send("DELETE", f"/v2/{repository}/manifests/{digest}")
        if response.status_code == 404:
            return False
        if response.status_code == 405:
            raise RegistryError(
                f"registry {self.target.host}: deleting manifests is disabled (HTTP 405); "
                f"its config needs storage.delete.enabled: true (`shipyard up` writes it so)"
            )
        self._raise_for(response, f"delete {repository}@{digest}")
        return True

    def blob_exists(self, repository: str, digest: str) -> bool:
        return self._send("HEAD", f"/v2/{repository}/blobs/{digest}").status_code == 200

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Link a blob the registry holds in repository ``source`` into ``repository`` (a cross-repository
        mount: no bytes sent); False when the registry does not mount it (then it opens an upload session
        instead, which is cancelled here)."""
        if self.blob_exists(repository, digest):
            return True
        response = self._send("POST", f"/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source})
        if response.status_code == 201:
            return True
        if response.status_code == 202 and (location := response.headers.get("Location")):
            self._send("DELETE", location)  # the session it opened instead; it expires anyway if this fails
            return False
        self._raise_for(response, f"mount of {digest} from {source} into {repository}")
        return False

    def upload_blob(self, repository: str, data: bytes) -> str:
        """Monolithic upload (POST then PUT ?digest=); a blob already there is not sent again."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.blob_exists(repository, digest):
            done = self._upload(repository, digest, data, {})
            if done is not None:
                self._raise_for(done, f"blob upload to {repository}")
        return digest

    def upload_file(self, repository: str, path: Path, digest: str, size: int) -> bool:
        """Upload a file already hashed as ``digest`` (``size`` bytes), streamed from disk; False when the
        registry had it, so nothing was sent.

        One monolithic PUT with ``Content-Length`` and a body read in ``CHUNK`` pieces: every registry
        takes it (the spec's chunked PATCH is optional on some), and a multi-GB weight file never sits in
        memory. The body re-opens the file on each attempt, so a retried PUT sends it whole again."""
        if self.blob_exists(repository, digest):
            return False
        done = self._upload(repository, digest, _FileBody(path, size), {"Content-Length": str(size)})
        if done is not None and done.status_code == 400:
            raise RegistryError(
                f"registry {self.target.host}: {path}: the registry refused it as {digest} (HTTP 400); "
                f"did the file change after it was hashed?"
            )
        if done is not None:
            self._raise_for(done, f"blob upload of {path} to {repository}")
        return True

    def _upload(self, repository: str, digest: str, content: Any, headers: dict[str, str]) -> httpx.Response | None:
        """POST an upload session, then PUT ``content`` into it as ``digest``: the PUT's answer, or None when
        an earlier attempt completed the upload but its answer was lost (a 404 for a blob now there)."""
        start = self._send("POST", f"/v2/{repository}/blobs/uploads/")
        self._raise_for(start, f"blob upload to {repository}")
        location = start.headers.get("Location", "")
        if not location:
            raise RegistryError(f"registry {self.target.host}: blob upload to {repository}: no Location header")
        separator = "&" if "?" in location else "?"
        done = self._send(
            "PUT",
            f"{location}{separator}digest={digest}",
            content=content,
            headers={"Content-Type": "application/octet-stream", **headers},
        )
        if done.status_code == 404 and self.blob_exists(repository, digest):
            return None
        return done

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The size the registry gives for a blob (HEAD, ``Content-Length``); None when it has no such blob."""
        response = self._send("HEAD", f"/v2/{repository}/blobs/{digest}", follow_redirects=True)
        if response.status_code == 404:
            return None
        self._raise_for(response, f"blob {repository}@{digest}")
        return int(response.headers.get("Content-Length", "-1"))

    def blob_hash(self, repository: str, digest: str) -> tuple[str, int] | None:
        """The sha256 digest and length of what the registry serves for ``digest``, hashed as it streams
        (a multi-GB layer is never held); None when it has no such blob. Compare them to what was asked for.

        ``_send`` reads bodies whole, so this GET has its own attempt; the HEAD before it answers any
        auth challenge, and a connection lost mid-stream hashes the blob again from its start."""
        if self.blob_size(repository, digest) is None:
            return None
        url = f"/v2/{repository}/blobs/{digest}"

        def once() -> tuple[str, int]:
            hasher, length = hashlib.sha256(), 0
            try:
                with self._http.stream("GET", url, headers=self._auth.header(), follow_redirects=True) as response:
                    if response.status_code in RETRYABLE_STATUS:
                        raise Transient(f"HTTP {response.status_code}")
                    self._raise_for(response, f"blob {repository}@{digest}")
                    for chunk in response.iter_bytes(CHUNK):
                        hasher.update(chunk)
                        length += len(chunk)
            except httpx.TransportError as exc:
                raise Transient(f"{type(exc).__name__}: {exc or 'connection failed'}") from None
            return "sha256:" + hasher.hexdigest(), length

        try:
            found: tuple[str, int] = self.policy.retrying(sleep=self._sleep)(once)
        except Transient as exc:
            raise RegistryError(
                f"registry {self.target.host}: GET {url} failed, giving up (last: {exc.what})"
            ) from None
        return found

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> str:
        """PUT the exact bytes, so the digest stays what it is (a promotion moves a tag, not content)."""
        response = self._send(
            "PUT", f"/v2/{repository}/manifests/{reference}", content=raw, headers={"Content-Type": media_type}
        )
        self._raise_for(response, f"manifest {repository}:{reference}")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        header = response.headers.get("Docker-Content-Digest")
        if header and header != digest:
            raise RegistryError(
                f"registry {self.target.host}: {repository}:{reference} stored as {header}, expected {digest}"
            )
        self._manifests[(repository, digest)] = Manifest(digest=digest, media_type=media_type, raw=raw)
        return digest

    def forget(self, repository: str, digest: str) -> None:
        """Drop what this client keeps of a manifest, e.g. after deleting it."""
        self._manifests.pop((repository, digest), None)

    def _raise_for(self, response: httpx.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise RegistryError(
                f"registry {self.target.host}: {what}: access denied (HTTP {response.status_code}); "
                f"check the credentials (docker login / GITHUB_TOKEN)"
            )
        if response.status_code >= 400:
            raise RegistryError(f"registry {self.target.host}: {what}: HTTP {response.status_code}")


class _FileBody:
    """A request body that reads ``size`` bytes of a file in ``CHUNK`` pieces, from the start each time it
    is iterated (httpx iterates it once per attempt; a generator could not be sent twice)."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def __iter__(self) -> Iterator[bytes]:
        left = self.size
        with self.path.open("rb") as stream:
            while left > 0:
                chunk = stream.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk


def next_link(header: str) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 ``Link`` header (distribution's and GHCR's paging), or None."""
    for part in header.split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            return url.strip().strip("<>")
    return None


def _path_of(url: str) -> str:
    """The request path without the query (upload URLs carry long opaque state)."""
    return httpx.URL(url).path
