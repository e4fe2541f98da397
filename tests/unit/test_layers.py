from __future__ import annotations

import io
import tarfile

import pytest

from shipyard.oci.layers import apply_layers, layer_entries
from shipyard.release.gates.checks import BUILD_TOOL_RE, PRIVILEGE_TOOL_RE, _in_bin


def tar_layer(*members: tuple[str, int]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            tar.addfile(info, io.BytesIO(b""))
    return out.getvalue()


def test_whiteouts_and_opaque_dirs_hide_lower_layers_only() -> None:
    lower = layer_entries(
        tar_layer(
            ("usr/bin/gcc", 0o755),
            ("usr/bin/su", 0o4755),
            ("etc/a/x", 0o644),
            ("etc/a/y", 0o644),
            ("./opt/keep", 0o644),
        )
    )
    upper = layer_entries(
        tar_layer(("usr/bin/.wh.gcc", 0o644), ("usr/bin/su", 0o755), ("etc/a/.wh..wh..opq", 0o644), ("etc/a/z", 0o644))
    )
    files = apply_layers([lower, upper])
    assert "usr/bin/gcc" not in files
    assert not files["usr/bin/su"].setuid_or_setgid
    assert sorted(p for p in files if p.startswith("etc/a/")) == ["etc/a/z"]
    assert "opt/keep" in files


def test_setuid_is_seen_when_nothing_above_changes_it() -> None:
    files = apply_layers([layer_entries(tar_layer(("usr/bin/su", 0o4755), ("usr/bin/wall", 0o2755)))])
    assert files["usr/bin/su"].setuid_or_setgid and files["usr/bin/wall"].setuid_or_setgid


@pytest.mark.parametrize("name", ["gcc", "gcc-12", "x86_64-linux-gnu-gcc-12", "cc", "c++", "g++", "clang", "make"])
def test_build_tools_match(name: str) -> None:
    assert BUILD_TOOL_RE.match(name)


@pytest.mark.parametrize("name", ["gcc-ar-ish", "python3", "gccgo-helper", "mcc", "tinycc", "makedoc", "cc1"])
def test_other_names_do_not(name: str) -> None:
    assert not BUILD_TOOL_RE.match(name)


def test_privilege_tools_and_bin_dirs() -> None:
    assert PRIVILEGE_TOOL_RE.match("sudo") and not PRIVILEGE_TOOL_RE.match("sudoku")
    assert _in_bin("usr/bin/gcc") and _in_bin("usr/local/bin/make") and not _in_bin("usr/share/doc/gcc")
    assert not _in_bin("usr/lib/gcc/x86_64-linux-gnu/12/cc1")


def test_a_layer_is_read_once_by_parallel_readers_and_once_per_machine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from shipyard.config.registry import parse_registry
    from shipyard.oci.client import RegistryClient
    from shipyard.oci.layers import LayerCache
    from tests.memregistry import MemoryRegistry

    mem = MemoryRegistry()
    blob = tar_layer(("usr/bin/su", 0o4755), ("etc/x", 0o644))
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    mem.blobs[digest] = blob

    def client() -> RegistryClient:
        return RegistryClient(parse_registry("localhost:5000/acme"), transport=httpx.MockTransport(mem.handle))

    cache = LayerCache(client(), tmp_path / "layers")
    with ThreadPoolExecutor(max_workers=8) as pool:
        listings = list(pool.map(lambda _: cache.listing("acme/a", digest), range(16)))
    assert all(listing == listings[0] for listing in listings) and ("usr/bin/su", 0o4755, True) in listings[0]
    assert [r for r in mem.requests if "/blobs/" in r[1]] == [("GET", f"/v2/acme/a/blobs/{digest}")]
    again = LayerCache(client(), tmp_path / "layers")  # the next verify, another process
    assert again.filesystem("acme/a", [digest])["usr/bin/su"].setuid_or_setgid
    assert len([r for r in mem.requests if "/blobs/" in r[1]]) == 1
    (tmp_path / "layers" / f"{digest.removeprefix('sha256:')}.json").write_text("{not json")
    assert LayerCache(client(), tmp_path / "layers").listing("acme/a", digest) == listings[0]  # read again


def test_a_childs_file_system_is_built_on_its_parents(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import shipyard.oci.layers as layers_module
    from shipyard.oci.layers import LayerCache

    listings = {
        "base": [("usr/bin/su", 0o4755, True), ("etc/a", 0o644, True)],
        "child": [("etc/.wh.a", 0o644, True), ("app/x", 0o644, True)],
    }
    applied: list[int] = []
    real_apply = layers_module.apply_layers

    def counting(layers, files=None):  # type: ignore[no-untyped-def]
        layers = list(layers)
        applied.append(len(layers))
        return real_apply(layers, files)

    monkeypatch.setattr(layers_module, "apply_layers", counting)
    cache = LayerCache(None)  # type: ignore[arg-type]
    monkeypatch.setattr(cache, "listing", lambda repository, digest: listings[digest])
    parent = cache.filesystem("r", ["base"])
    child = cache.filesystem("r", ["base", "child"])
    assert set(parent) == {"usr/bin/su", "etc/a"}, "the child's whiteout leaves the parent's view alone"
    assert set(child) == {"usr/bin/su", "app/x"} and set(child) == set(real_apply(listings[d] for d in listings))
    assert applied == [1, 1], "the child applies its own layer only"


def test_a_verifiers_file_systems_hold_what_check_files_reads_and_whiteouts_still_apply(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from shipyard.oci.layers import LayerCache, apply_layers
    from shipyard.release.gates.checks import checked_by_files

    listings = {
        "base": [
            ("usr/bin/gcc", 0o755, True),
            ("usr/bin/su", 0o4755, True),
            ("usr/lib/x.so", 0o644, True),
            ("opt/app/helper", 0o2755, True),  # setgid outside a bin directory
            ("usr/local/bin/tool", 0o755, True),
        ],
        "child": [
            ("usr/bin/.wh.gcc", 0o644, True),
            ("usr/local/bin/.wh..wh..opq", 0o644, True),
            ("app/x", 0o644, True),
        ],
    }
    cache = LayerCache(None, keep=checked_by_files)  # type: ignore[arg-type]
    monkeypatch.setattr(cache, "_read", lambda repository, digest: listings[digest])
    assert set(cache.filesystem("r", ["base"])) == {"usr/bin/gcc", "usr/bin/su", "opt/app/helper", "usr/local/bin/tool"}
    child = cache.filesystem("r", ["base", "child"])
    assert set(child) == {"usr/bin/su", "opt/app/helper"}, "the whiteouts remove gcc and tool from the kept view"
    whole = apply_layers(listings[d] for d in ("base", "child"))
    assert {p: e for p, e in whole.items() if checked_by_files(p, e.mode, e.is_file)} == dict(child)
