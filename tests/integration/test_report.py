"""`shipyard report` rendered by a real headless Chromium: the DOM it builds, and a screenshot.

The recorded release of tests/data/report/ is reported with its ledgers pushed to the real registry; one test
reports the real gated release of the integration session. Chromium (Debian's ``chromium``, installed by
scripts/up.sh) runs with a profile of its own and in its own process group, which is killed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest

from shipyard.oci.client import RegistryClient
from shipyard.record import ReleaseRecord, load_record
from shipyard.release.channels.ledger import ledger_repository, save_ledger
from shipyard.report.text import short_digest
from tests import reportdata
from tests.integration.conftest import IT_REGISTRY, shipyard
from tests.reportdata import NEXT, RELEASE

WIDTH, HEIGHT = 1280, 2600
P50_RGB, P95_RGB = (0x8F, 0xB8, 0xE6), (0x1F, 0x5A, 0x99)  # the chart's bar colours (report_html.P50, P95)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


def chromium(tmp_path: Path, *args: str, timeout: float = 120) -> str:
    """Run headless Chromium to completion and return its stdout; its whole process group is gone after."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run scripts/up.sh (as root on Debian it installs it)")
    argv = [binary, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {timeout:g} s: {' '.join(argv)}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers (zygote, renderers) that outlived the browser
    assert proc.returncode == 0, f"chromium exited {proc.returncode}:\n{err[-3000:]}"
    return out


# --- a small DOM of what Chromium dumped ------------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        return " ".join(" ".join((c if isinstance(c, str) else c.text()).split()) for c in self.children if c).strip()

    def all(self, tag: str | None = None, **attrs: str) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, Node):
                if (tag is None or child.tag == tag) and all(child.attrs.get(k) == v for k, v in attrs.items()):
                    yield child
                yield from child.all(tag, **attrs)

    def one(self, tag: str | None = None, **attrs: str) -> Node:
        found = list(self.all(tag, **attrs))
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]


VOID = {"meta", "link", "br", "hr", "img", "input", "col", "area", "base", "source", "wbr"}


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dom(html: str) -> Node:
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def by_attr(root: Node, name: str, value: str, tag: str | None = None) -> list[Node]:
    return [n for n in root.all(tag) if n.attrs.get(name) == value]


# --- PNG, read just enough to look at its pixels ----------------------------------------------


def png_pixels(data: bytes) -> np.ndarray:
    """8-bit RGB(A) non-interlaced PNG (what Chromium writes) → a (height, width, 3) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(idat)
    out, prev = bytearray(height * stride), bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub: a running sum per channel
            row = bytearray(np.cumsum(np.frombuffer(row, np.uint8).reshape(width, bpp), axis=0, dtype=np.uint8))
        elif kind == 2:  # Up
            row = bytearray(np.frombuffer(row, np.uint8) + np.frombuffer(prev, np.uint8))
        elif kind in (3, 4):  # Average, Paeth: each byte depends on the one just reconstructed
            for x in range(stride):
                a, b = (row[x - bpp] if x >= bpp else 0), prev[x]
                if kind == 3:
                    row[x] = (row[x] + ((a + b) >> 1)) & 255
                    continue
                c = prev[x - bpp] if x >= bpp else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                row[x] = (row[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out[y * stride : (y + 1) * stride] = row
        prev = row
    return np.frombuffer(bytes(out), np.uint8).reshape(height, width, bpp)[:, :, :3]


def has_colour(pixels: np.ndarray, rgb: tuple[int, int, int], at_least: int) -> bool:
    return int(np.all(pixels == np.array(rgb, dtype=np.uint8), axis=2).sum()) >= at_least


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def fixture_release(tmp_path: Path, registry: RegistryClient) -> Iterator[tuple[Path, ReleaseRecord]]:
    """The recorded release in a project of its own, its two ledgers in a namespace of its own (removed after)."""
    namespace = f"shipyard-it/report-{uuid.uuid4().hex[:10]}"
    root = tmp_path / "proj"
    record = reportdata.materialize(root, registry=f"{IT_REGISTRY.split('/')[0]}/{namespace}")
    pushed = [(ledger.channel, save_ledger(registry, namespace, ledger)) for ledger in reportdata.ledgers().values()]
    yield root, record
    for _, digest in pushed:
        url = f"{registry.target.api_base}/v2/{ledger_repository(namespace)}/manifests/{digest}"
        assert httpx.delete(url, timeout=30).status_code in (202, 404)


def report_paths(root: Path, *args: str) -> tuple[Path, Path]:
    paths = json.loads(shipyard("--project", str(root), "report", *args, "--json").stdout)
    return Path(paths["html"]), Path(paths["markdown"])


# --- tests --------------------------------------------------------------------------------------


def test_recorded_release_renders_in_chromium(tmp_path: Path, fixture_release: tuple[Path, ReleaseRecord]) -> None:
    root, record = fixture_release
    html_path, md_path = report_paths(root)
    assert md_path.is_file() and html_path.is_file()
    page = dom(chromium(tmp_path, "--dump-dom", html_path.as_uri()))

    assert page.one("head").one("title").text() == f"Release {RELEASE}: shipyard report"
    gates = [li.text() for li in page.all("li", **{"class": "gate"})]
    assert gates == ["verify: 11/12 passed", "scan: 12/12 passed", "canary: 3/3 passed (profile cpu)"]

    units = page.one("section", id="units")
    for key, unit in record.units.items():
        (row,) = by_attr(units, "data-unit", key, "tr")
        digest = row.one("code", **{"class": "digest"})
        assert digest.text() == short_digest(unit.digest) and digest.attrs["title"] == unit.digest, key
        assert row.text().startswith(f"{unit.image} {unit.kind} {short_digest(unit.digest)}"), row.text()
    failing = by_attr(units, "data-unit", "pc2/model-ops-coordinator", "tr")[0]
    assert "331.5 MB" in failing.text() and "15/16 passed, FAILED: size" in failing.text()
    assert "16/16 passed" in by_attr(units, "data-unit", "cpu/model-ops-coordinator", "tr")[0].text()
    assert "reused from 20250110-1a2b3c4d" in by_attr(units, "data-unit", "pc2/family-web", "tr")[0].text()
    assert "size: expected <= 320 MB, found 331.5 MB" in page.one("section", id="verify-failures").text()

    canary = page.one("section", id="canary")
    chart = canary.one("svg", id="latency-chart")
    for key, p50, p95 in (
        ("cpu/affective-processing-center", "48.3", "71.6"),
        ("cpu/model-ops-coordinator", "44.4", "47.9"),
        ("cpu/real-time-audio-pipeline", "0.5", "1.5"),
    ):
        (bars,) = by_attr(chart, "data-unit", key, "g")
        assert f"p50 {p50} ms" in bars.text() and f"p95 {p95} ms" in bars.text(), bars.text()
        assert len(list(bars.all("rect"))) == 2 and len(list(bars.all("line"))) == 1  # p50, p95; the SLO
        (row,) = by_attr(canary, "data-unit", key, "tr")
        assert row.text().startswith(f"{key} {p50} ms {p95} ms 250 ms 0 20 ") and row.text().endswith(" s passed")

    (top,) = by_attr(page.one("section", id="findings"), "data-finding", "CVE-2023-45853", "tr")
    assert top.text().startswith("CRITICAL CVE-2023-45853 allowed zlib1g 1:1.2.13.dfsg-1 no fix zlib: integer")
    assert top.text().endswith("all 12 units")

    history = page.one("section", id="history")
    promoted = by_attr(history, "data-release", RELEASE, "tr")
    assert [r.attrs["data-channel"] for r in promoted] == ["canary", "stable"]
    assert promoted[0].text().startswith(f"2025-01-11T12:41:09Z promoted promote {RELEASE} cpu (6)")
    assert "FORCED pc2/model-ops-coordinator 11 MB over its size budget" in promoted[1].text()
    (replaced,) = by_attr(history, "data-release", NEXT, "tr")
    assert f"replaced by {NEXT}" in replaced.text() and "cpu (5)" in replaced.text()

    shot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", html_path.as_uri())
    data = shot.read_bytes()
    assert len(data) > 50_000, f"{len(data)} bytes: a nearly empty page?"
    assert struct.unpack(">II", data[16:24]) == (WIDTH, HEIGHT)
    pixels = png_pixels(data)
    colours = np.unique(pixels.reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 50, f"{len(colours)} colours: not a rendered report"
    white = np.all(pixels == 255, axis=2).mean()
    assert 0.3 < white < 0.98, f"{white:.0%} of the page is white"
    # the chart's bars were painted: solid areas of both bar colours
    assert has_colour(pixels, P95_RGB, 1000) and has_colour(pixels, P50_RGB, 1000)


def test_markdown_file_is_the_same_report(fixture_release: tuple[Path, ReleaseRecord]) -> None:
    root, record = fixture_release
    _, md_path = report_paths(root, "--channel", "stable")
    md = md_path.read_text()
    assert md.startswith(f"# Release {RELEASE}\n") and "### stable" in md and "### canary" not in md
    assert all(short_digest(u.digest) in md for u in record.units.values())
    assert "| cpu/model-ops-coordinator | 44.4 ms | 47.9 ms | 250 ms |" in md


def test_unreachable_registry_is_reported_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    reportdata.materialize(root)
    html_path, _ = report_paths(root, "--registry", "127.0.0.1:9/nothing-listens")
    page = dom(chromium(tmp_path, "--dump-dom", html_path.as_uri()))
    note = page.one("p", **{"class": "note"}).text()
    assert note.startswith("Promotion history not shown: the registry 127.0.0.1:9/nothing-listens is not reachable")


def test_real_gated_release(tmp_path: Path, gated) -> None:  # type: ignore[no-untyped-def]
    root, record = gated
    html_path, _ = report_paths(root, record.release)
    # the record as the report read it: other tests re-run stages on the session's release
    record = load_record(root / ".shipyard" / "releases" / f"{record.release}.json")
    page = dom(chromium(tmp_path, "--dump-dom", html_path.as_uri()))
    units = page.one("section", id="units")
    for key, unit in record.units.items():
        (row,) = by_attr(units, "data-unit", key, "tr")
        assert short_digest(unit.digest) in row.text(), key
    chart = page.one("svg", id="latency-chart")
    for key, unit in record.units.items():
        if unit.verdicts.canary is not None:
            p95 = unit.verdicts.canary.p95_ms
            (bars,) = by_attr(chart, "data-unit", key, "g")
            assert f"p95 {f'{p95:.1f}'.removesuffix('.0')} ms" in bars.text()
    assert "verify: " in page.one("ul", **{"class": "gates"}).text()
