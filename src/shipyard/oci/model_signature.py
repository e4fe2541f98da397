"""A model's signature in sigstore ``model-signing``'s format (a sigstore bundle of an in-toto statement over
the files' digests), made from the ModelPack layer digests without reading a file and pushed as a referrer
of the model's manifest."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import RegistryError
from .artifacts import MANIFEST_TYPE, OneFile, artifact_manifest, canonical
from .attestations import INDEX_TYPE, referrers_tag
from .client import INDEX_TYPES, Manifest, RegistryClient
from .cosign import IN_TOTO_PAYLOAD_TYPE, STATEMENT_V1, dsse_envelope, pae
from .modelpack import ARTIFACT_TYPE, FILEPATH
from .signing import PublicKey, SigningKey

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")  # what model_signing ignores by default
TITLE = "model.sig"  # model_signing's default signature name: what `oras pull` writes the layer as
# the annotations sigstore's OCI bundle referrers carry (cosign's --new-bundle-format)
BUNDLE_ANNOTATIONS = {
    "dev.sigstore.bundle.content": "dsse-envelope",
    "dev.sigstore.bundle.predicateType": PREDICATE_TYPE,
}
_DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")


class NotSignable(ValueError):
    """A model whose layers do not give each file's sha256 (an archive layer, no file path): ``str()`` names it."""


@dataclass(frozen=True)
class HashingRules:
    """What the verifier is told to leave out of the directory, and whether it may follow symlinks."""

    ignore_paths: tuple[str, ...] = GIT_PATHS
    allow_symlinks: bool = False


def hashing_rules(directory: Path) -> HashingRules:
    """The rules that make model_signing hash exactly the files ``model_paths`` gives for ``directory``:
    git's paths and every hidden entry in it (a hidden directory once, not its contents). Names only."""
    hidden, symlinks = set(GIT_PATHS), False
    for root, dirs, names in os.walk(directory):
        here = Path(root)
        for name in [*dirs, *names]:
            if name.startswith("."):
                hidden.add((here / name).relative_to(directory).as_posix())
            elif (here / name).is_symlink():
                symlinks = True
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return HashingRules(tuple(sorted(hidden)), symlinks)


def _hex(digest: str, path: str) -> str:
    match = _DIGEST_RE.match(digest)
    if match is None:
        raise NotSignable(f"{path}: digest {digest!r} is not a sha256 digest")
    return match[1]


def _order(path: str) -> tuple[str, ...]:
    return PurePosixPath(path).parts  # model_signing sorts its resources as paths (by component)


def statement(name: str, files: Iterable[tuple[str, str]], rules: HashingRules = HashingRules()) -> dict[str, Any]:
    """The in-toto statement model_signing verifies, over ``files`` (relative POSIX path, ``sha256:<hex>``
    of its bytes). A function of its arguments alone: the same files always give the same statement.

    An ignore path that is, or holds, one of the files is dropped: the verifier would skip that file."""
    digests: dict[str, str] = {}
    for path, digest in files:
        parts = PurePosixPath(path).parts
        if not parts or path.startswith("/") or ".." in parts or str(PurePosixPath(path)) != path:
            raise NotSignable(f"{path!r}: not a relative path inside the model")
        if path in digests:
            raise NotSignable(f"{path}: named by more than one file")
        digests[path] = _hex(digest, path)
    if not digests:
        raise NotSignable(f"model {name}: no files")
    paths = sorted(digests, key=_order)
    root = hashlib.sha256(b"".join(bytes.fromhex(digests[p]) for p in paths)).hexdigest()
    ignored = sorted(p for p in set(rules.ignore_paths) if not any(f == p or f.startswith(p + "/") for f in digests))
    serialization: dict[str, Any] = {"method": "files", "hash_type": "sha256", "allow_symlinks": rules.allow_symlinks}
    if ignored:
        serialization["ignore_paths"] = ignored
    return {
        "_type": STATEMENT_V1,
        "subject": [{"name": name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization,
            "resources": [{"name": p, "algorithm": "sha256", "digest": digests[p]} for p in paths],
        },
    }


def key_hint(key: PublicKey) -> str:
    """How a bundle names its key: the hex SHA-256 of the public key's PEM (what model_signing compares)."""
    return hashlib.sha256(key.pem()).hexdigest()


def sign_statement(document: Mapping[str, Any], key: SigningKey) -> bytes:
    """``document`` signed with ``key`` into the sigstore bundle ``model_signing verify key`` reads."""
    bundle = {
        "mediaType": BUNDLE_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(key.public)}, "tlogEntries": []},
        "dsseEnvelope": json.loads(dsse_envelope(document, key)),
    }
    return json.dumps(bundle, indent=2, sort_keys=True).encode() + b"\n"


def verified_statement(bundle: bytes, key: PublicKey) -> dict[str, Any] | None:
    """The statement in ``bundle`` when it names ``key`` and ``key`` signed it; None otherwise."""
    try:
        document = json.loads(bundle)
        if document.get("mediaType") != BUNDLE_TYPE:
            return None
        if document["verificationMaterial"]["publicKey"]["hint"] != key_hint(key):
            return None
        envelope = document["dsseEnvelope"]
        if envelope["payloadType"] != IN_TOTO_PAYLOAD_TYPE:
            return None
        body = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
        found = json.loads(body)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
    if not key.verify(pae(IN_TOTO_PAYLOAD_TYPE, body), signature) or not isinstance(found, dict):
        return None
    return found if found.get("predicateType") == PREDICATE_TYPE else None


def model_files(manifest: Manifest) -> list[tuple[str, str]]:
    """(path, sha256 digest) of every file of a ModelPack manifest, from its raw layers alone."""
    doc = manifest.json
    if doc.get("artifactType") != ARTIFACT_TYPE:
        raise NotSignable(f"{manifest.digest}: artifactType {doc.get('artifactType')} is not {ARTIFACT_TYPE}")
    files = []
    for index, layer in enumerate(doc.get("layers") or []):
        path = (layer.get("annotations") or {}).get(FILEPATH)
        if not isinstance(path, str):
            raise NotSignable(f"{manifest.digest}: layer {index} has no {FILEPATH} annotation")
        if not str(layer.get("mediaType", "")).endswith(".raw"):
            raise NotSignable(f"{path}: layer {layer.get('mediaType')} is an archive, not the file itself")
        files.append((path, str(layer.get("digest", ""))))
    return files


# --- in the registry -------------------------------------------------------------------------------


def _referrers(registry: RegistryClient, repository: str, digest: str) -> list[dict[str, Any]]:
    found = registry.manifest(repository, referrers_tag(digest))
    if found is None:
        return []
    if found.media_type not in INDEX_TYPES:
        raise RegistryError(
            f"registry {registry.target.host}: {repository}:{referrers_tag(digest)} holds a {found.media_type}, "
            f"not a referrers index"
        )
    return [d for d in found.json.get("manifests") or [] if isinstance(d, dict)]


def _bundles(registry: RegistryClient, repository: str, digest: str) -> list[bytes]:
    """Every model-signing bundle referring to ``digest``, newest first (a listed referrer that is gone,
    or that names another subject, is skipped)."""
    found = []
    for descriptor in reversed(_referrers(registry, repository, digest)):
        if descriptor.get("artifactType") != BUNDLE_TYPE:
            continue
        manifest = registry.manifest(repository, str(descriptor.get("digest")))
        if manifest is None or (manifest.json.get("subject") or {}).get("digest") != digest:
            continue
        layers = [layer for layer in manifest.json.get("layers") or [] if layer.get("mediaType") == BUNDLE_TYPE]
        if layers:
            found.append(registry.blob(repository, str(layers[0]["digest"])))
    return found


def read_model_signature(
    registry: RegistryClient, repository: str, digest: str, keys: Sequence[PublicKey]
) -> tuple[bytes, PublicKey] | None:
    """The newest model-signing bundle of the model ``digest`` that one of ``keys`` signed over exactly
    the model's files, and that key; None when there is none (with no keys, always: an unchecked bundle
    is never handed out). A referrer's ``subject`` is not signed: the files are what binds it."""
    model = registry.manifest(repository, digest)
    if model is None or model.is_index or not keys:
        return None
    files = {path: _hex(found, path) for path, found in model_files(model)}
    for bundle in _bundles(registry, repository, digest):
        for key in keys:
            document = verified_statement(bundle, key)
            if document is not None and _resources(document) == files:
                return bundle, key
    return None


def _resources(document: Mapping[str, Any]) -> dict[str, str] | None:
    try:
        resources = document["predicate"]["resources"]
        return {str(r["name"]): str(r["digest"]) for r in resources if r["algorithm"] == "sha256"}
    except (KeyError, TypeError):
        return None


def push_model_signature(
    registry: RegistryClient,
    repository: str,
    digest: str,
    key: SigningKey,
    *,
    name: str,
    rules: HashingRules = HashingRules(),
) -> tuple[bytes, bool]:
    """Sign the ModelPack model ``digest`` with ``key`` in model-signing's format and push the bundle as
    its referrer: the bundle, and False when one of the same statement signed by ``key`` was there.

    ``NotSignable`` when the manifest's layers do not give each file's hash."""
    model = registry.manifest(repository, digest)
    if model is None or model.is_index:
        raise RegistryError(f"registry {registry.target.host}: {repository}@{digest}: no model manifest")
    document = statement(name, model_files(model), rules)
    for bundle in _bundles(registry, repository, digest):
        if verified_statement(bundle, key.public) == document:
            return bundle, False
    bundle = sign_statement(document, key)
    raw = artifact_manifest(
        registry,
        repository,
        bundle,
        OneFile(BUNDLE_TYPE, TITLE, BUNDLE_TYPE),
        subject=model,
        annotations=BUNDLE_ANNOTATIONS,
    )
    pushed = registry.put_manifest(repository, "sha256:" + hashlib.sha256(raw).hexdigest(), raw, MANIFEST_TYPE)
    descriptor = {
        "mediaType": MANIFEST_TYPE,
        "digest": pushed,
        "size": len(raw),
        "artifactType": BUNDLE_TYPE,
        "annotations": BUNDLE_ANNOTATIONS,
    }
    # the referrers tag schema, as the SBOM referrers keep it: read-modify-write of one index
    kept = [d for d in _referrers(registry, repository, digest) if d.get("digest") != pushed]
    index = {"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [*kept, descriptor]}
    registry.put_manifest(repository, referrers_tag(digest), canonical(index), INDEX_TYPE)
    return bundle, True
