"""The final file system of an image, from its layer blobs in the registry (no pull, no engine).

Layers are applied in order with OCI whiteouts (``.wh.<name>`` deletes a path,
``.wh..wh..opq`` empties a directory), so a file removed or re-moded in a later layer is
seen as the image really has it.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import RegistryError
from .client import RegistryClient

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class FileEntry:
    path: str  # without a leading slash, e.g. "usr/bin/gcc"
    mode: int
    is_file: bool

    @property
    def setuid_or_setgid(self) -> bool:
        return setuid_or_setgid(self.mode, self.is_file)


def setuid_or_setgid(mode: int, is_file: bool) -> bool:
    return is_file and bool(mode & (stat.S_ISUID | stat.S_ISGID))


def layer_entries(blob: bytes) -> list[tuple[str, int, bool]]:
    """(path, mode, is_regular_file) of every entry of a (gzip or plain) tar layer."""
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            return [(_norm(m.name), m.mode, m.isfile()) for m in tar.getmembers()]
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise RegistryError(f"layer is not a readable tar archive: {exc}") from None


def _norm(name: str) -> str:
    return str(PurePosixPath("/", name)).lstrip("/")


def apply_layers(
    layers: Iterable[list[tuple[str, int, bool]]], files: dict[str, FileEntry] | None = None
) -> dict[str, FileEntry]:
    """``files`` (the file system so far, changed in place; default empty) with ``layers`` applied."""
    files = {} if files is None else files
    for entries in layers:
        # A layer's whiteouts hide what the layers below it had, never its own entries.
        hidden: list[str] = []  # exact paths (and everything below them)
        emptied: list[str] = []  # directories whose lower contents are hidden
        added: list[FileEntry] = []
        for path, mode, is_file in entries:
            parent, _, base = path.rpartition("/")
            if base == OPAQUE:
                emptied.append(f"{parent}/" if parent else "")
            elif base.startswith(WHITEOUT):
                hidden.append(f"{parent}/{base[len(WHITEOUT) :]}" if parent else base[len(WHITEOUT) :])
            else:
                added.append(FileEntry(path, mode, is_file))
        if hidden or emptied:
            for existing in list(files):
                if any(existing == h or existing.startswith(h + "/") for h in hidden) or any(
                    existing.startswith(d) and existing != d.rstrip("/") for d in emptied
                ):
                    del files[existing]
        for entry in added:
            files[entry.path] = entry
    return files


Listing = list[tuple[str, int, bool]]
Keep = Callable[[str, int, bool], bool]  # (path, mode, is_regular_file) -> whether a file system keeps it


class LayerCache:
    """Listings by layer digest: images of one release share most layers, so each is read once, by
    one thread while the others wait for it; with ``directory``, once per machine (a layer never
    changes: ``<directory>/<hex>.json``), so verifying the next release reads only its new layers.

    ``keep``: the listings it gives, and so its file systems, hold only the entries it accepts
    (whiteouts still apply to them; the listings on disk stay whole), e.g. what a check looks at: an
    image has some 10,000 files, of which a few hundred are programs."""

    def __init__(self, registry: RegistryClient, directory: Path | None = None, keep: Keep | None = None) -> None:
        self.registry = registry
        self.directory = directory
        self.keep = keep
        self._listings: dict[str, Future[Listing]] = {}  # as ``keep`` filters them
        self._filesystems: dict[tuple[str, ...], dict[str, FileEntry]] = {}
        self._lock = threading.Lock()

    def listing(self, repository: str, digest: str) -> Listing:
        with self._lock:
            pending = self._listings.get(digest)
            mine = pending is None
            if pending is None:
                pending = self._listings[digest] = Future()
        if mine:
            try:
                pending.set_result(self._kept(self._read(repository, digest)))
            except BaseException as exc:
                pending.set_exception(exc)
        return pending.result()

    def filesystem(self, repository: str, layer_digests: Iterable[str]) -> Mapping[str, FileEntry]:
        """The file system after ``layer_digests`` (read-only: it is kept); built on the longest chain
        already built (a child's layers start with its parent's), so the base's entries are applied once."""
        chain = tuple(layer_digests)
        with self._lock:
            done = next((n for n in range(len(chain), 0, -1) if chain[:n] in self._filesystems), 0)
            start = dict(self._filesystems[chain[:done]]) if done else {}
        files = apply_layers((self.listing(repository, d) for d in chain[done:]), start)
        with self._lock:
            self._filesystems[chain] = files
        return files

    def _kept(self, listing: Listing) -> Listing:
        """The entries ``keep`` accepts, and every whiteout (what ``apply_layers`` applies to them)."""
        keep = self.keep
        if keep is None:
            return listing
        return [e for e in listing if keep(*e) or e[0].rpartition("/")[2].startswith(WHITEOUT)]

    def _read(self, repository: str, digest: str) -> Listing:
        path = self.directory / f"{digest.removeprefix('sha256:')}.json" if self.directory else None
        if path is not None and path.is_file():
            try:
                return [(str(p), int(m), bool(f)) for p, m, f in json.loads(path.read_text())]
            except (ValueError, TypeError):
                pass  # a damaged entry is read again from the registry and written anew
        listing = layer_entries(self.registry.blob(repository, digest))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".layer-")
            with os.fdopen(fd, "w") as out:
                json.dump(listing, out, separators=(",", ":"))
            os.replace(tmp, path)
        return listing
