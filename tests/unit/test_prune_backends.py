"""The deletes' two backends against fakes: GHCR's package API (httpx.MockTransport, in GitHub's
documented shape) and distribution's catalog paging and DELETE; and the plan applied in order."""

from __future__ import annotations

from urllib.parse import unquote

import httpx
import pytest

from shipyard.errors import RegistryError
from shipyard.oci.client import RegistryClient, next_link
from shipyard.oci.credentials import Secret
from shipyard.oci.ghcr import GhcrPackages
from shipyard.oci.reference import RegistryNamespace
from shipyard.release.retention.apply import Distribution, Ghcr, apply_plan, backend_for
from shipyard.release.retention.inventory import Node
from shipyard.release.retention.plan import Plan

TOKEN = "ghp_not-a-real-token"


def fake_github(versions: dict[str, list[dict[str, object]]], *, kind: str = "orgs", log: list[str] | None = None):  # type: ignore[no-untyped-def]
    """api.github.com as its REST docs describe the container package endpoints (two pages of versions)."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Accept"] == "application/vnd.github+json"
        path = request.url.raw_path.decode().split("?")[0]
        (log if log is not None else []).append(f"{request.method} {path}")
        parts = path.strip("/").split("/")
        if parts[0] != kind:
            return httpx.Response(404, json={"message": "Not Found"})
        if parts[2:] == ["packages"]:
            assert request.url.params["package_type"] == "container"
            return httpx.Response(200, json=[{"id": i, "name": name} for i, name in enumerate(versions)])
        package = unquote(parts[4])
        if package not in versions:
            return httpx.Response(404, json={"message": "Package not found."})
        if request.method == "GET":
            page = int(request.url.params.get("page", "1"))
            items = versions[package][(page - 1) * 2 : page * 2]
            more = len(versions[package]) > page * 2
            link = f'<https://api.github.com{path}?per_page=2&page={page + 1}>; rel="next"' if more else ""
            return httpx.Response(200, json=items, headers={"Link": link} if link else {})
        if request.method == "DELETE":
            wanted = int(parts[6])
            versions[package] = [v for v in versions[package] if v["id"] != wanted]
            return httpx.Response(204)
        return httpx.Response(405)

    return httpx.MockTransport(handler)


def version(vid: int, digest: str, *tags: str) -> dict[str, object]:
    return {"id": vid, "name": digest, "metadata": {"package_type": "container", "container": {"tags": list(tags)}}}


def test_ghcr_deletes_the_version_named_by_the_digest_across_pages() -> None:
    log: list[str] = []
    store = {
        "ai-system/cpu/app": [version(1, "sha256:aa", "20250101-x"), version(2, "sha256:bb"), version(3, "sha256:cc")]
    }
    api = GhcrPackages("acme", Secret(TOKEN), transport=fake_github(store, log=log))
    assert [v.digest for v in api.versions("ai-system/cpu/app")] == ["sha256:aa", "sha256:bb", "sha256:cc"]
    assert api.versions("ai-system/cpu/app")[0].tags == ("20250101-x",)
    assert api.delete("ai-system/cpu/app", "sha256:cc") is True
    assert [v["id"] for v in store["ai-system/cpu/app"]] == [1, 2]
    assert "DELETE /orgs/acme/packages/container/ai-system%2Fcpu%2Fapp/versions/3" in log
    assert api.delete("ai-system/cpu/app", "sha256:zz") is False  # already gone: nothing to do
    assert api.packages() == ["ai-system/cpu/app"]


def test_ghcr_falls_back_to_a_user_owner() -> None:
    store = {"app": [version(7, "sha256:aa")]}
    api = GhcrPackages("someone", Secret(TOKEN), transport=fake_github(store, kind="users"))
    assert api.delete("app", "sha256:aa") is True and store["app"] == []


def test_ghcr_refusal_is_one_line_without_the_token() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(403, json={"message": "Must have admin rights"}))
    with pytest.raises(RegistryError) as caught:
        GhcrPackages("acme", Secret(TOKEN), transport=transport).packages()
    assert "delete:packages" in str(caught.value) and TOKEN not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_ghcr_backend_lists_repositories_under_the_namespace_and_is_chosen_for_ghcr_io() -> None:
    store = {"ai-system/cpu/app": [], "other/thing": []}
    api = GhcrPackages("acme", Secret(TOKEN), transport=fake_github(store))
    registry = RegistryClient(
        RegistryNamespace("ghcr.io", "acme/ai-system"), transport=httpx.MockTransport(lambda r: httpx.Response(404))
    )
    backend = backend_for(registry, lambda owner: api)
    assert isinstance(backend, Ghcr) and backend.repositories("acme/ai-system") == ["acme/ai-system/cpu/app"]
    assert "GHCR frees" in backend.reclaim_hint()
    local = RegistryClient(RegistryNamespace("localhost:5077", "acme"))
    assert isinstance(backend_for(local, lambda owner: api), Distribution)


def test_next_link() -> None:
    assert next_link('</v2/_catalog?last=b&n=2>; rel="next"') == "/v2/_catalog?last=b&n=2"
    assert next_link('<https://x/a?page=1>; rel="prev", <https://x/a?page=3>; rel="next"') == "https://x/a?page=3"
    assert next_link("") is None


def distribution(deletes: list[str], *, allowed: bool = True) -> RegistryClient:
    repos = ["acme/a", "acme/b", "other/c"]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/_catalog":
            last = request.url.params.get("last")
            start = repos.index(last) + 1 if last else 0
            page = repos[start : start + 2]
            more = start + 2 < len(repos)
            headers = {"Link": f'</v2/_catalog?last={page[-1]}&n=2>; rel="next"'} if more else {}
            return httpx.Response(200, json={"repositories": page}, headers=headers)
        if request.method == "DELETE":
            if not allowed:
                return httpx.Response(405, json={"errors": [{"code": "UNSUPPORTED"}]})
            deletes.append(request.url.path)
            return httpx.Response(202 if "gone" not in request.url.path else 404)
        return httpx.Response(404)

    return RegistryClient(RegistryNamespace("localhost:5077", "acme"), transport=httpx.MockTransport(handler))


def test_distribution_catalog_pages_and_deletes_in_plan_order() -> None:
    deletes: list[str] = []
    client = distribution(deletes)
    assert client.catalog(page_size=2) == ["acme/a", "acme/b", "other/c"]
    backend = Distribution(client)
    assert backend.repositories("acme") == ["acme/a", "acme/b"]
    nodes = [
        Node("acme/a", "sha256:child", "m", 1),
        Node("acme/a", "sha256:gone", "m", 1),
        Node("acme/a", "sha256:index", "m", 1),
    ]
    plan = Plan([], {}, [], nodes, [], 0, 3, 0)
    events: list[str] = []
    assert apply_plan(plan, client, backend, lambda e: events.append(e.message)) == 2  # one was already gone
    assert deletes == [f"/v2/acme/a/manifests/{n.digest}" for n in nodes]
    assert len(events) == 3


def test_deletes_disabled_say_how_to_enable_them() -> None:
    with pytest.raises(RegistryError, match="storage.delete.enabled: true"):
        distribution([], allowed=False).delete_manifest("acme/a", "sha256:x")
