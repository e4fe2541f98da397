"""A tiny BoltDB (bbolt) writer, and a Trivy vulnerability DB (schema 2) built with it, for offline scans in tests."""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeAlias

PAGE_SIZE = 4096
MAGIC = 0xED0CDAED
VERSION = 2
BRANCH_FLAG, LEAF_FLAG, META_FLAG, FREELIST_FLAG = 0x01, 0x02, 0x04, 0x10
BUCKET_LEAF_FLAG = 0x01
PAGE_HEADER = struct.Struct("<QHHI")  # id, flags, count, overflow
LEAF_ELEMENT = struct.Struct("<IIII")  # flags, pos (element -> key), ksize, vsize
BUCKET_HEADER = struct.Struct("<QQ")  # root pgid (0 = inline), sequence
META = struct.Struct("<IIIIQQQQQ")  # magic, version, pageSize, flags, root{pgid, seq}, freelist, pgid (hwm), txid
MAX_INLINE_BUCKET = PAGE_SIZE // 4  # bbolt keeps a bucket inline only up to a quarter page

Tree: TypeAlias = "Mapping[str, bytes | str | Tree]"
ROOT_PGID, FIRST_FREE_PGID = 3, 4


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _b(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _leaf(items: list[tuple[int, bytes, bytes]], pgid: int = 0) -> bytes:
    """A leaf page (header, elements, then key/value data); `pgid` 0 for an inline page. Pads to whole pages."""
    elements, data = b"", b""
    data_start = PAGE_HEADER.size + LEAF_ELEMENT.size * len(items)
    for i, (flags, key, value) in enumerate(items):
        pos = data_start + len(data) - (PAGE_HEADER.size + LEAF_ELEMENT.size * i)
        elements += LEAF_ELEMENT.pack(flags, pos, len(key), len(value))
        data += key + value
    size = data_start + len(data)
    if pgid == 0:
        return PAGE_HEADER.pack(0, LEAF_FLAG, len(items), 0) + elements + data
    pages = -(-size // PAGE_SIZE)
    return (PAGE_HEADER.pack(pgid, LEAF_FLAG, len(items), pages - 1) + elements + data).ljust(pages * PAGE_SIZE, b"\0")


class _Writer:
    def __init__(self, first_pgid: int) -> None:
        self.next_pgid = first_pgid
        self.pages: dict[int, bytes] = {}

    def items(self, bucket: Tree, *, inline_ok: bool) -> list[tuple[int, bytes, bytes]]:
        out: list[tuple[int, bytes, bytes]] = []
        for key, value in sorted(bucket.items(), key=lambda kv: _b(kv[0])):
            if isinstance(value, Mapping):
                out.append((BUCKET_LEAF_FLAG, _b(key), self.bucket(value, inline_ok=inline_ok)))
            else:
                out.append((0, _b(key), _b(value)))
        keys = [k for _, k, _ in out]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate keys in bucket: {keys}")
        return out

    def bucket(self, bucket: Tree, *, inline_ok: bool = True) -> bytes:
        """A bucket's value: header plus inline leaf page, or header pointing at its own leaf page."""
        items = self.items(bucket, inline_ok=True)
        inline = BUCKET_HEADER.pack(0, 0) + _leaf(items)
        if inline_ok and len(inline) <= MAX_INLINE_BUCKET and not any(f & BUCKET_LEAF_FLAG for f, _, _ in items):
            return inline
        pgid = self.next_pgid
        page = _leaf(items, pgid)
        self.next_pgid += len(page) // PAGE_SIZE
        self.pages[pgid] = page
        return BUCKET_HEADER.pack(pgid, 0)


def _meta(pgid: int, root: int, hwm: int, txid: int) -> bytes:
    fields = META.pack(MAGIC, VERSION, PAGE_SIZE, 0, root, 0, 2, hwm, txid)
    body = PAGE_HEADER.pack(pgid, META_FLAG, 0, 0) + fields + struct.pack("<Q", fnv1a64(fields))
    return body.ljust(PAGE_SIZE, b"\0")


def write_bolt(path: Path, tree: Tree) -> None:
    """Write `tree` (top-level bucket name -> bucket contents) as a bbolt file. Top-level buckets get own pages."""
    for name, value in tree.items():
        if not isinstance(value, Mapping):
            raise TypeError(f"top-level entry {name!r} must be a bucket (dict)")
    # The root page's size does not depend on child pgids: size it first so children go after its overflow.
    root_pages = len(_leaf([(BUCKET_LEAF_FLAG, _b(k), BUCKET_HEADER.pack(0, 0)) for k in tree], ROOT_PGID))
    writer = _Writer(ROOT_PGID + root_pages // PAGE_SIZE)
    root = _leaf(writer.items(tree, inline_ok=False), ROOT_PGID)
    hwm = writer.next_pgid
    freelist = PAGE_HEADER.pack(2, FREELIST_FLAG, 0, 0).ljust(PAGE_SIZE, b"\0")
    out = bytearray(_meta(0, ROOT_PGID, hwm, 0) + _meta(1, ROOT_PGID, hwm, 1) + freelist + root)
    for pgid, page in sorted(writer.pages.items()):
        assert len(out) == pgid * PAGE_SIZE, (len(out), pgid)
        out += page
    assert len(out) == hwm * PAGE_SIZE
    path.write_bytes(bytes(out))


SEVERITIES = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
DEBIAN_BUCKET = "debian 12"
DEBIAN_SOURCE = {
    "ID": "debian",
    "Name": "Debian Security Tracker",
    "URL": "https://salsa.debian.org/security-tracker-team/security-tracker",
}


@dataclass(frozen=True)
class Advisory:
    """One Debian 12 advisory on a *source* package; `fixed_version` None means affected and unfixed."""

    cve_id: str
    source_package: str
    severity: str
    fixed_version: str | None
    title: str = ""


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_trivy_db(directory: Path, advisories: list[Advisory], *, next_update: datetime | None = None) -> Path:
    """Write `directory/trivy.db` and `directory/metadata.json`; returns the DB path."""
    packages: dict[str, dict[str, str]] = defaultdict(dict)
    vulnerabilities: dict[str, str] = {}
    for adv in advisories:
        if adv.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {adv.severity!r}")
        status = {"FixedVersion": adv.fixed_version} if adv.fixed_version is not None else {"Status": 2}
        packages[adv.source_package][adv.cve_id] = json.dumps(status)
        vulnerabilities[adv.cve_id] = json.dumps(
            {
                "Title": adv.title or adv.cve_id,
                "Description": adv.title or adv.cve_id,
                "Severity": adv.severity,
                "VendorSeverity": {"debian": SEVERITIES[adv.severity]},
            }
        )
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "trivy.db"
    write_bolt(
        db,
        {
            "data-source": {DEBIAN_BUCKET: json.dumps(DEBIAN_SOURCE)},
            DEBIAN_BUCKET: dict(packages),
            "vulnerability": vulnerabilities,
        },
    )
    now = datetime.now(UTC)
    metadata = {
        "Version": 2,
        "NextUpdate": _rfc3339(next_update or now + timedelta(days=3650)),
        "UpdatedAt": _rfc3339(now),
        "DownloadedAt": _rfc3339(now),
    }
    (directory / "metadata.json").write_text(json.dumps(metadata))
    return db
