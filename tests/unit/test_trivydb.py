from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.trivydb import PAGE_SIZE, Advisory, Tree, fnv1a64, make_trivy_db, write_bolt

MAGIC = 0xED0CDAED


class BoltReader:
    """An independent, minimal bbolt reader: validates what it walks and returns buckets as nested dicts."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        assert len(data) % PAGE_SIZE == 0
        self.metas = [self.meta(i) for i in (0, 1)]
        self.pages_seen: dict[int, int] = {}

    def header(self, buf: bytes, off: int = 0) -> tuple[int, int, int, int]:
        pid, flags, count, overflow = struct.unpack_from("<QHHI", buf, off)
        return pid, flags, count, overflow

    def meta(self, pgid: int) -> dict[str, int]:
        off = pgid * PAGE_SIZE
        pid, flags, _, _ = self.header(self.data, off)
        assert (pid, flags) == (pgid, 0x04)
        fields = struct.unpack_from("<IIIIQQQQQQ", self.data, off + 16)
        names = ("magic", "version", "page_size", "flags", "root", "sequence", "freelist", "hwm", "txid", "checksum")
        meta = dict(zip(names, fields, strict=True))
        assert meta["checksum"] == fnv1a64(self.data[off + 16 : off + 16 + 56]), f"bad checksum on meta {pgid}"
        return meta

    def page(self, pgid: int) -> bytes:
        pid, flags, _, overflow = self.header(self.data, pgid * PAGE_SIZE)
        assert pid == pgid and flags == 0x02, (pid, flags)
        assert (pgid + overflow + 1) <= self.metas[1]["hwm"]
        self.pages_seen[pgid] = overflow
        return self.data[pgid * PAGE_SIZE : (pgid + overflow + 1) * PAGE_SIZE]

    def leaf(self, page: bytes) -> dict[bytes, Any]:
        _, flags, count, _ = self.header(page)
        assert flags == 0x02
        out: dict[bytes, Any] = {}
        for i in range(count):
            elem = 16 + 16 * i
            eflags, pos, ksize, vsize = struct.unpack_from("<IIII", page, elem)
            key = page[elem + pos : elem + pos + ksize]
            value = page[elem + pos + ksize : elem + pos + ksize + vsize]
            assert len(value) == vsize
            out[key] = self.bucket(value) if eflags & 0x01 else value
        keys = list(out)
        assert keys == sorted(keys) and len(set(keys)) == count, f"keys not sorted bytewise: {keys}"
        return out

    def bucket(self, value: bytes) -> dict[bytes, Any]:
        root, _sequence = struct.unpack_from("<QQ", value)
        return self.leaf(value[16:]) if root == 0 else self.leaf(self.page(root))

    def tree(self) -> dict[bytes, Any]:
        return self.leaf(self.page(self.metas[1]["root"]))


def read(path: Path) -> tuple[BoltReader, dict[bytes, Any]]:
    reader = BoltReader(path.read_bytes())
    return reader, reader.tree()


def test_fnv1a64_known_vectors() -> None:
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8


def test_meta_pages_freelist_and_file_size(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    write_bolt(db, {"b": {"k": "v"}})
    reader, _ = read(db)
    for txid, meta in enumerate(reader.metas):
        assert (meta["magic"], meta["version"], meta["page_size"]) == (MAGIC, 2, PAGE_SIZE)
        assert (meta["root"], meta["freelist"], meta["txid"]) == (3, 2, txid)
        assert meta["hwm"] * PAGE_SIZE == db.stat().st_size
    assert struct.unpack_from("<QHHI", reader.data, 2 * PAGE_SIZE) == (2, 0x10, 0, 0)


def test_nested_round_trip_with_bytewise_sorted_keys(tmp_path: Path) -> None:
    tree: Tree = {
        "zeta": {"b": "2", "a": b"\x00\x01", "B": "upper", "é": "accent", "sub": {"y": "1", "x": {"deep": "v"}}},
        "Alpha": {},
        "alpha": {"k": "v"},
    }
    db = tmp_path / "x.db"
    write_bolt(db, tree)
    _, got = read(db)
    assert list(got) == [b"Alpha", b"alpha", b"zeta"]
    assert list(got[b"zeta"]) == [b"B", b"a", b"b", b"sub", "é".encode()]
    assert got[b"zeta"][b"sub"] == {b"x": {b"deep": b"v"}, b"y": b"1"}
    assert got[b"zeta"][b"a"] == b"\x00\x01" and got[b"Alpha"] == {}


def test_large_buckets_get_own_pages_with_overflow(tmp_path: Path) -> None:
    big = {f"k{i:05d}": "v" * 100 for i in range(300)}
    db = tmp_path / "x.db"
    write_bolt(db, {"top": {"big": big, "small": {"a": "b"}}})
    reader, got = read(db)
    assert got[b"top"][b"big"] == {k.encode(): v.encode() for k, v in big.items()}
    assert max(reader.pages_seen.values()) >= 7  # ~33 KiB of leaf spans overflow pages
    assert len(reader.pages_seen) == 3  # root, "top" and "big"; "small" stays inline


def test_top_level_values_must_be_buckets(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        write_bolt(tmp_path / "x.db", {"k": "v"})


def test_make_trivy_db_layout(tmp_path: Path) -> None:
    make_trivy_db(
        tmp_path,
        [
            Advisory("CVE-2099-0001", "zlib", "CRITICAL", "1:1.2.13.dfsg-2", "zlib bug"),
            Advisory("CVE-2099-0002", "openssl", "LOW", None, "openssl bug"),
        ],
    )
    _, got = read(tmp_path / "trivy.db")
    assert set(got) == {b"data-source", b"debian 12", b"vulnerability"}
    assert json.loads(got[b"data-source"][b"debian 12"])["ID"] == "debian"
    assert json.loads(got[b"debian 12"][b"zlib"][b"CVE-2099-0001"]) == {"FixedVersion": "1:1.2.13.dfsg-2"}
    assert json.loads(got[b"debian 12"][b"openssl"][b"CVE-2099-0002"]) == {"Status": 2}
    vuln = json.loads(got[b"vulnerability"][b"CVE-2099-0001"])
    assert (vuln["Title"], vuln["Severity"], vuln["VendorSeverity"]) == ("zlib bug", "CRITICAL", {"debian": 4})
    meta = json.loads((tmp_path / "metadata.json").read_text())
    assert meta["Version"] == 2
    assert datetime.fromisoformat(meta["NextUpdate"].replace("Z", "+00:00")) > datetime.now(UTC)


def test_empty_db_still_has_vulnerability_bucket(tmp_path: Path) -> None:
    make_trivy_db(tmp_path, [])
    _, got = read(tmp_path / "trivy.db")
    assert got[b"vulnerability"] == {} and got[b"debian 12"] == {}
