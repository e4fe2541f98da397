"""The channel ledger: every promotion and rollback of a channel, signed and chained, kept as a one-file
artifact ``<namespace>/shipyard-ledger:<channel>`` in the registry itself, readable from any machine."""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import json
import os
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Literal

from ...errors import LedgerBroken, RegistryError
from ...oci.artifacts import MANIFEST_TYPE, OneFile, artifact_manifest, canonical
from ...oci.client import RegistryClient
from ...oci.signing import PublicKey, SigningKey
from ...versions import check_schema, writer

LEDGER_TYPE = "application/vnd.shipyard.ledger.v1+json"
LEDGER_SCHEMA = 2  # 2: schema and written_by in the document; 1 (no field): read as before
State = Literal["in-progress", "complete"]


@dataclass
class Entry:
    action: Literal["promote", "rollback"]
    release: str
    digests: dict[str, str]  # unit -> digest the channel points at
    previous: dict[str, str | None]  # unit -> digest before (None: the channel tag did not exist)
    at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    by: str = field(default_factory=lambda: actor())
    state: State = "in-progress"
    forced: bool = False
    reason: str = ""
    extends: str = ""  # digest of the ledger manifest this entry was appended to ("" for the first)
    follows: str = ""  # sha256 of the canonical JSON of the entry before, signature included ("" for the first)
    key_id: str = ""  # the public key that signed (never the key itself)
    signature: str = ""  # base64 DER ECDSA over signed_payload(); "" in ledgers of older shipyard

    def describe(self) -> str:
        """``2026-12-01T10:00:00Z promote 20250111-abcdef12 by ci@host``: how an error names the entry."""
        return f"{self.at} {self.action} {self.release} by {self.by}"


def entry_hash(entry: Entry) -> str:
    """What the next entry's ``follows`` holds: the SHA-256 of the whole entry, signature included."""
    return "sha256:" + hashlib.sha256(canonical(asdict(entry))).hexdigest()


def signed_payload(channel: str, entry: Entry) -> bytes:
    """The bytes an entry's signature covers: the channel (an entry cannot be moved to another channel's
    ledger) and every field but the signature."""
    fields = asdict(entry)
    del fields["signature"]
    return canonical({"channel": channel, "entry": fields})


@dataclass
class Ledger:
    channel: str
    entries: list[Entry] = field(default_factory=list)
    # the digest of the manifest this ledger was read from ("" when there was none): what an appended
    # entry extends, and what a writer checks the registry still has before it writes
    head: str = field(default="", compare=False)

    @property
    def completed(self) -> list[Entry]:
        return [e for e in self.entries if e.state == "complete"]

    def append(self, entry: Entry, signer: SigningKey) -> None:
        """Chain ``entry`` after the last one (and the manifest this ledger was read from) and sign it."""
        entry.extends = self.head
        entry.follows = entry_hash(self.entries[-1]) if self.entries else ""
        self.entries.append(entry)
        self.sign_last(signer)

    def sign_last(self, signer: SigningKey) -> None:
        """(Re-)sign the last entry, the only one that may change (in-progress -> complete)."""
        entry = self.entries[-1]
        entry.key_id = signer.public.key_id
        entry.signature = base64.b64encode(signer.sign(signed_payload(self.channel, entry))).decode()

    def to_json(self) -> bytes:
        document = {"channel": self.channel, "schema": LEDGER_SCHEMA, "written_by": writer(),
                    "entries": [asdict(e) for e in self.entries]}  # fmt: skip
        return json.dumps(document, indent=2, sort_keys=True).encode() + b"\n"


def actor() -> str:
    """Who promotes: the CI actor when there is one, else user@host."""
    if os.environ.get("GITHUB_ACTOR"):
        return f"{os.environ['GITHUB_ACTOR']} (GitHub Actions)"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def ledger_repository(namespace: str) -> str:
    return f"{namespace}/shipyard-ledger"


def ledger_head(registry: RegistryClient, namespace: str, channel: str) -> str:
    """The digest the channel's ledger tag names now ("" when there is no ledger yet): one HEAD request."""
    return registry.head_digest(ledger_repository(namespace), channel) or ""


def load_ledger(registry: RegistryClient, namespace: str, channel: str) -> Ledger:
    """The channel's ledger, with ``head`` the digest of the very manifest its entries came from."""
    repository = ledger_repository(namespace)
    manifest = registry.manifest(repository, channel)
    if manifest is None:
        return Ledger(channel)
    try:
        data = json.loads(registry.blob(repository, manifest.json["layers"][0]["digest"]))
        check_schema(data, LEDGER_SCHEMA, "channel ledger", f"{registry.target.host}/{repository}:{channel}")
        return Ledger(channel, [Entry(**entry) for entry in data["entries"]], head=manifest.digest)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise RegistryError(f"{repository}:{channel}: unreadable ledger ({exc})") from None


def save_ledger(registry: RegistryClient, namespace: str, ledger: Ledger) -> str:
    """Push the ledger; the digest of its manifest, the new head."""
    return put_ledger(registry, namespace, ledger.channel, ledger_manifest(registry, namespace, ledger))


def ledger_manifest(registry: RegistryClient, namespace: str, ledger: Ledger) -> bytes:
    """Upload the ledger's blobs; the manifest bytes that make it the channel's ledger once PUT (the same
    artifact ``push_document`` makes). Apart, so that a writer's last look at the head comes right
    before the one PUT that replaces it."""
    file = OneFile(LEDGER_TYPE, f"{ledger.channel}.json", LEDGER_TYPE)
    return artifact_manifest(registry, ledger_repository(namespace), ledger.to_json(), file)


def put_ledger(registry: RegistryClient, namespace: str, channel: str, raw: bytes) -> str:
    return registry.put_manifest(ledger_repository(namespace), channel, raw, MANIFEST_TYPE)


def entry_problem(
    channel: str, entries: Sequence[Entry], index: int, trusted: Sequence[PublicKey], *, link: bool = True
) -> str | None:
    """What is wrong with ``entries[index]`` (0-based) as a link of the chain, or None.

    In this order: signed at all, follows the entry before it (unless not ``link``), signed by a trusted key."""
    entry = entries[index]
    if not entry.signature:
        return "unsigned (an older shipyard wrote it, or its signature was removed)"
    if link and entry.follows != (entry_hash(entries[index - 1]) if index else ""):
        return f"does not follow entry {index}" if index else "follows an entry the ledger does not have"
    keys = [k for k in trusted if k.key_id == entry.key_id]
    if not keys:
        return f"signature does not verify with a trusted key (signed by {short_key(entry.key_id)}, not trusted)"
    try:
        signature = base64.b64decode(entry.signature, validate=True)
    except (binascii.Error, ValueError):
        signature = b""
    if not any(k.verify(signed_payload(channel, entry), signature) for k in keys):
        return f"signature does not verify with a trusted key (changed after {short_key(entry.key_id)} signed it)"
    return None


def verify_ledger(ledger: Ledger, trusted: Sequence[PublicKey], *, start: int = 0) -> list[str]:
    """Check every signature from ``entries[start]`` on and every hash link after it (the link of
    ``entries[start]`` too when it is the first); the key ids that signed, in order of first use.
    :class:`LedgerBroken` names the first entry that does not hold."""
    signers: list[str] = []
    for index in range(start, len(ledger.entries)):
        entry = ledger.entries[index]
        problem = entry_problem(ledger.channel, ledger.entries, index, trusted, link=index == 0 or index > start)
        if problem:
            raise LedgerBroken(f"{ledger.channel}: ledger entry {index + 1} ({entry.describe()}): {problem}")
        if entry.key_id not in signers:
            signers.append(entry.key_id)
    return signers


def short_key(key_id: str) -> str:
    """``sha256:0123456789abcdef…``: enough of a key id to tell keys apart in one line."""
    return key_id[:23] + "…" if len(key_id) > 23 else key_id or "no key"


def entry_time(entry: Entry) -> float | None:
    """When the entry was written, as a POSIX timestamp (None when ``at`` is not shipyard's format)."""
    try:
        return datetime.strptime(entry.at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
