"""GHCR's package API (api.github.com, "Packages"): what the OCI API of ghcr.io cannot do, list the
repositories and delete a manifest (a package version)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from ..errors import RegistryError
from .client import next_link
from .credentials import Secret

API = "https://api.github.com"
API_VERSION = "2022-11-28"


@dataclass(frozen=True)
class Version:
    id: int
    digest: str
    tags: tuple[str, ...] = field(default=())


class GhcrPackages:
    """The package API for one owner (``owner`` is the first component of the registry namespace)."""

    def __init__(self, owner: str, token: Secret, *, transport: httpx.BaseTransport | None = None) -> None:
        self.owner = owner
        self._token = token
        self._http = httpx.Client(base_url=API, transport=transport, timeout=30.0)
        self._kind: str | None = None  # "orgs" or "users", found on first use
        self._versions: dict[str, list[Version]] = {}

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, url: str) -> httpx.Response:
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self._token.reveal()}",
            "X-GitHub-Api-Version": API_VERSION,
        }
        try:
            return self._http.request(method, url, headers=headers)
        except httpx.TransportError as exc:
            raise RegistryError(f"GitHub API {method} {httpx.URL(url).path}: {type(exc).__name__}") from None

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise RegistryError(
                f"GitHub API: {what}: HTTP {response.status_code}; the token needs read:packages and "
                f"delete:packages (GITHUB_TOKEN, or a PAT in SHIPYARD_REGISTRY_PASSWORD)"
            )
        if response.status_code >= 400:
            raise RegistryError(f"GitHub API: {what}: HTTP {response.status_code}")

    def _paged(self, path: str, what: str) -> list[Any]:
        items: list[Any] = []
        url: str | None = f"{path}{'&' if '?' in path else '?'}per_page=100"
        while url:
            response = self._request("GET", url)
            self._check(response, what)
            items += response.json()
            url = next_link(response.headers.get("Link", ""))
        return items

    def _owner_path(self) -> str:
        """``/orgs/<owner>`` or ``/users/<owner>``: an organization's packages are asked for first."""
        if self._kind is None:
            response = self._request("GET", f"/orgs/{self.owner}/packages?package_type=container&per_page=1")
            self._kind = "users" if response.status_code == 404 else "orgs"
            if self._kind == "orgs":
                self._check(response, f"packages of {self.owner}")
        return f"/{self._kind}/{self.owner}"

    def packages(self) -> list[str]:
        """The container packages of the owner: their names (repository paths under the owner)."""
        found = self._paged(f"{self._owner_path()}/packages?package_type=container", f"packages of {self.owner}")
        return [str(item["name"]) for item in found]

    def versions(self, package: str) -> list[Version]:
        if package not in self._versions:
            path = f"{self._owner_path()}/packages/container/{quote(package, safe='')}/versions"
            self._versions[package] = [
                Version(
                    int(item["id"]),
                    str(item["name"]),
                    tuple(((item.get("metadata") or {}).get("container") or {}).get("tags") or ()),
                )
                for item in self._paged(path, f"versions of {package}")
            ]
        return self._versions[package]

    def delete(self, package: str, digest: str) -> bool:
        """Delete the version whose name is ``digest``; False when the package has none (already gone)."""
        version = next((v for v in self.versions(package) if v.digest == digest), None)
        if version is None:  # pushed since the listing (a prune's tombstone): ask again once
            self._versions.pop(package, None)
            version = next((v for v in self.versions(package) if v.digest == digest), None)
        if version is None:
            return False
        path = f"{self._owner_path()}/packages/container/{quote(package, safe='')}/versions/{version.id}"
        response = self._request("DELETE", path)
        if response.status_code == 404:
            return False
        self._check(response, f"delete {package}@{digest}")
        self._versions[package] = [v for v in self._versions.get(package, []) if v.id != version.id]
        return True


def package_of(repository: str) -> tuple[str, str]:
    """``acme/ai-system/mainpc/model-ops`` -> (``acme``, ``ai-system/mainpc/model-ops``)."""
    owner, _, package = repository.partition("/")
    if not package:
        raise RegistryError(f"ghcr.io/{repository}: expected <owner>/<package>")
    return owner, package
