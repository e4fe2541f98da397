"""An in-memory OCI distribution API behind httpx.MockTransport, for unit tests that assert requests."""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field

import httpx

_MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
_BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_UPLOAD = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class MemoryRegistry:
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)  # (repo, digest) -> body, type
    tags: dict[tuple[str, str], str] = field(default_factory=dict)  # (repo, tag) -> digest
    blobs: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    _uploads: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]

    def put(self, repo: str, tag: str, body: bytes, media_type: str) -> str:
        digest = digest_of(body)
        self.manifests[(repo, digest)] = (body, media_type)
        self.tags[(repo, tag)] = digest
        return digest

    def handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        self.requests.append((method, path))
        if path == "/v2/":
            return httpx.Response(200)
        if m := _MANIFEST.match(path):
            repo, ref = m["repo"], m["ref"]
            digest = ref if ref.startswith("sha256:") else self.tags.get((repo, ref))
            if method == "PUT":
                body = request.read()
                digest = digest_of(body)
                self.manifests[(repo, digest)] = (body, request.headers["Content-Type"])
                if not ref.startswith("sha256:"):
                    self.tags[(repo, ref)] = digest
                return httpx.Response(201, headers={"Docker-Content-Digest": digest})
            if digest is None or (repo, digest) not in self.manifests:
                return httpx.Response(404)
            body, media_type = self.manifests[(repo, digest)]
            return httpx.Response(
                200,
                content=b"" if method == "HEAD" else body,
                headers={"Content-Type": media_type, "Docker-Content-Digest": digest},
            )
        if m := _BLOB.match(path):
            if m["digest"] not in self.blobs:
                return httpx.Response(404)
            return httpx.Response(200, content=b"" if method == "HEAD" else self.blobs[m["digest"]])
        if (m := _UPLOAD.match(path)) and method == "POST":
            return httpx.Response(202, headers={"Location": f"http://localhost:5000/upload/{next(self._uploads)}"})
        if path.startswith("/upload/") and method == "PUT":
            data = request.read()
            digest = request.url.params["digest"]
            assert digest == digest_of(data)
            self.blobs[digest] = data
            return httpx.Response(201)
        return httpx.Response(404)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)
