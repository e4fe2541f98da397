"""Image signatures (``sha256-<hex>.sig``) and in-toto attestations (``.att``) in the layout cosign 2.x
reads with ``--key``: a signature counts only when a trusted key verifies it and what it signs names the
digest asked about."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import RegistryError
from .artifacts import MANIFEST_TYPE, canonical
from .client import RegistryClient
from .signing import PublicKey, SigningKey

SIMPLESIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_ANNOTATION = "predicateType"
# what an attestation layer holds (e.g. which gate's verdict), for a reader to skip layers by: unsigned,
# so a hint of what not to read, never a reason to accept; cosign and other readers ignore it
LABEL_ANNOTATION = "dev.shipyard.label"
COSIGN_SIGNATURE_TYPE = "cosign container image signature"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_TYPES = (STATEMENT_V1, "https://in-toto.io/Statement/v0.1")  # cosign 2.x attest writes v0.1
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
IMAGE_MANIFEST_TYPES = (MANIFEST_TYPE, "application/vnd.docker.distribution.manifest.v2+json")
WRITE_ATTEMPTS = 5
_DIGEST_RE = re.compile(r"^sha256:([0-9a-f]{64})$")
_ZERO_TIME = "0001-01-01T00:00:00Z"


def _hex(digest: str) -> str:
    match = _DIGEST_RE.match(digest)
    if match is None:
        raise ValueError(f"{digest!r} is not a sha256 digest")
    return match[1]


def signature_tag(digest: str) -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>.sig``."""
    return f"sha256-{_hex(digest)}.sig"


def attestation_tag(digest: str) -> str:
    """``sha256:<hex>`` -> ``sha256-<hex>.att``."""
    return f"sha256-{_hex(digest)}.att"


# --- payloads --------------------------------------------------------------------------------------


def simple_signing_payload(docker_reference: str, digest: str, optional: Mapping[str, str] | None = None) -> bytes:
    """The payload cosign signs, byte for byte as cosign writes it (``optional`` is null without annotations)."""
    _hex(digest)
    return canonical(
        {
            "critical": {
                "identity": {"docker-reference": docker_reference},
                "image": {"docker-manifest-digest": digest},
                "type": COSIGN_SIGNATURE_TYPE,
            },
            "optional": dict(optional) if optional else None,
        }
    )


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def dsse_envelope(statement: Mapping[str, Any], key: SigningKey) -> bytes:
    """``statement`` signed in a DSSE envelope (``keyid`` empty, as cosign writes it)."""
    body = canonical(dict(statement))
    signature = key.sign(pae(IN_TOTO_PAYLOAD_TYPE, body))
    envelope = {
        "payloadType": IN_TOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": "", "sig": base64.b64encode(signature).decode()}],
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def _b64(text: object) -> bytes | None:
    """Standard or URL-safe base64 (DSSE verifiers must take both); None when it is neither."""
    if not isinstance(text, str) or not text:
        return None
    normalized = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(normalized + "=" * (-len(normalized) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _names_digest(payload: bytes, digest: str) -> bool:
    try:
        critical = json.loads(payload)["critical"]
        return bool(critical["type"] == COSIGN_SIGNATURE_TYPE and critical["image"]["docker-manifest-digest"] == digest)
    except (ValueError, KeyError, TypeError):
        return False


def _statement_about(body: bytes, digest: str, predicate_type: str) -> dict[str, Any] | None:
    """The statement in ``body`` when it is an in-toto statement of ``predicate_type`` about ``digest``."""
    hex_digest = _hex(digest)
    try:
        statement = json.loads(body)
        if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
            return None
        if statement.get("predicateType") != predicate_type:
            return None
        if any(subject["digest"].get("sha256") == hex_digest for subject in statement["subject"]):
            return statement
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


# --- reading the tags ------------------------------------------------------------------------------


def _layers(registry: RegistryClient, repository: str, tag: str, *, writing: bool) -> list[dict[str, Any]] | None:
    """The layer descriptors under ``tag`` (None: no such tag). Something else than an image manifest
    there is no signature to a reader, and a refusal to a writer (it is not ours to overwrite)."""
    found = registry.manifest(repository, tag)
    if found is None:
        return None
    layers = found.json.get("layers") if found.media_type in IMAGE_MANIFEST_TYPES else None
    if isinstance(layers, list) and all(isinstance(layer, dict) for layer in layers):
        return layers
    if writing:
        raise RegistryError(
            f"registry {registry.target.host}: {repository}:{tag} holds a {found.media_type or 'document'}, "
            f"not a cosign signature manifest; not overwriting it"
        )
    return []


def _of_type(layers: Sequence[dict[str, Any]], media_type: str) -> list[dict[str, Any]]:
    return [layer for layer in layers if layer.get("mediaType") == media_type and isinstance(layer.get("digest"), str)]


def _annotation(layer: dict[str, Any], name: str) -> object:
    annotations = layer.get("annotations")
    return annotations.get(name) if isinstance(annotations, dict) else None


def _signature_of(layer: dict[str, Any]) -> bytes | None:
    return _b64(_annotation(layer, SIGNATURE_ANNOTATION))


def verified_signers(registry: RegistryClient, repository: str, digest: str, keys: Sequence[PublicKey]) -> list[str]:
    """The key ids of ``keys`` that signed a simple-signing payload naming exactly ``digest``."""
    layers = _layers(registry, repository, signature_tag(digest), writing=False) or []
    return _signers(registry, repository, digest, _of_type(layers, SIMPLESIGNING_TYPE), keys)


def _signers(
    registry: RegistryClient, repository: str, digest: str, layers: Sequence[dict[str, Any]], keys: Sequence[PublicKey]
) -> list[str]:
    accepted: set[str] = set()
    # signers of one digest share one payload blob; the one this registry's own name would give is known
    # without a fetch: a layer whose digest is that payload's hash holds exactly those bytes
    ours = simple_signing_payload(f"{registry.target.host}/{repository}", digest)
    payloads: dict[str, bytes] = {_sha256(ours): ours}
    for layer in layers:
        signature = _signature_of(layer)
        pending = [key for key in keys if key.key_id not in accepted]
        if signature is None or not pending:
            continue
        if layer["digest"] not in payloads:
            payloads[layer["digest"]] = registry.blob(repository, layer["digest"])
        payload = payloads[layer["digest"]]
        if not _names_digest(payload, digest):
            continue
        accepted.update(key.key_id for key in pending if key.verify(payload, signature))
    return list(dict.fromkeys(key.key_id for key in keys if key.key_id in accepted))


def _envelope_signers(raw: bytes, keys: Sequence[PublicKey]) -> tuple[bytes, list[str]] | None:
    """The in-toto body of a DSSE envelope and which of ``keys`` signed it; None when it is unreadable."""
    try:
        envelope = json.loads(raw)
        if envelope.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
            return None
        body = _b64(envelope["payload"])
        signatures = [_b64(entry.get("sig")) for entry in envelope["signatures"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if body is None:
        return None
    signed = pae(IN_TOTO_PAYLOAD_TYPE, body)
    valid = [s for s in signatures if s is not None]
    return body, [key.key_id for key in keys if any(key.verify(signed, s) for s in valid)]


def newest_statements(
    registry: RegistryClient,
    repository: str,
    digest: str,
    keys: Sequence[PublicKey],
    predicate_type: str,
    skip: Callable[[str], bool] = lambda label: False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key id, statement) for every attestation of ``predicate_type`` about ``digest`` signed by one of
    ``keys``, newest layer first, each layer's blob read only when it is reached: a reader that has what
    it needs stops. A layer whose ``LABEL_ANNOTATION`` ``skip`` accepts is not read."""
    return _statements(registry, repository, digest, keys, predicate_type, newest_first=True, skip=skip)


def _statements(
    registry: RegistryClient,
    repository: str,
    digest: str,
    keys: Sequence[PublicKey],
    predicate_type: str,
    *,
    newest_first: bool,
    skip: Callable[[str], bool] = lambda label: False,
) -> Iterator[tuple[str, dict[str, Any]]]:
    layers = _of_type(_layers(registry, repository, attestation_tag(digest), writing=False) or [], DSSE_TYPE)
    unique = list({key.key_id: key for key in keys}.values())
    for layer in reversed(layers) if newest_first else layers:
        labelled = _annotation(layer, PREDICATE_ANNOTATION)
        label = _annotation(layer, LABEL_ANNOTATION)
        if (labelled is not None and labelled != predicate_type) or (isinstance(label, str) and skip(label)):
            continue  # unsigned, so only a reason to skip, never to accept
        opened = _envelope_signers(registry.blob(repository, layer["digest"]), unique)
        if opened is None:
            continue
        body, signers = opened
        statement = _statement_about(body, digest, predicate_type) if signers else None
        if statement is not None:
            yield from ((key_id, statement) for key_id in signers)


# --- writing the tags ------------------------------------------------------------------------------


def _config(layers: Sequence[dict[str, Any]]) -> bytes:
    """The image config cosign writes for a signature manifest (go-containerregistry's key order)."""
    return json.dumps(
        {
            "architecture": "",
            "created": _ZERO_TIME,
            "history": [{"created": _ZERO_TIME} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
            "config": {},
        },
        separators=(",", ":"),
    ).encode()


def _append(
    registry: RegistryClient,
    repository: str,
    tag: str,
    blob: bytes,
    layer: dict[str, Any],
    done: Callable[[list[dict[str, Any]]], bool],
) -> bool:
    """Add ``layer`` (its blob ``blob``) to the manifest under ``tag`` unless ``done`` says the layers already
    hold what it would add; True when it was pushed. Re-read after each write: a concurrent writer's
    manifest that dropped ours is merged with again."""
    pushed = False
    for attempt in range(WRITE_ATTEMPTS + 1):
        layers = _layers(registry, repository, tag, writing=True) or []
        if layer in layers or done(layers):
            return pushed
        if attempt == WRITE_ATTEMPTS:
            break
        registry.upload_blob(repository, blob)
        merged = [*layers, layer]
        config = _config(merged)
        config_digest = registry.upload_blob(repository, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": config_digest},
            "layers": merged,
        }
        registry.put_manifest(repository, tag, json.dumps(manifest, separators=(",", ":")).encode(), MANIFEST_TYPE)
        pushed = True
    raise RegistryError(
        f"registry {registry.target.host}: {repository}:{tag} was rewritten by another writer "
        f"{WRITE_ATTEMPTS} times while adding a layer to it; try again"
    )


def _same_json(one: bytes, other: bytes) -> bool:
    try:
        return bool(json.loads(one) == json.loads(other))
    except ValueError:
        return False


def _descriptor(media_type: str, blob: bytes, annotations: dict[str, str]) -> dict[str, Any]:
    return {"mediaType": media_type, "size": len(blob), "digest": _sha256(blob), "annotations": annotations}


def _sha256(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def push_signature(
    registry: RegistryClient, repository: str, digest: str, docker_reference: str, key: SigningKey
) -> bool:
    """Sign ``digest`` with ``key`` under ``sha256-<hex>.sig``, beside the signatures already there.

    False (nothing pushed) when a valid signature of ``digest`` by ``key`` is already there."""
    payload = simple_signing_payload(docker_reference, digest)
    signature = base64.b64encode(key.sign(payload)).decode()
    layer = _descriptor(SIMPLESIGNING_TYPE, payload, {SIGNATURE_ANNOTATION: signature})
    public = key.public

    def signed(layers: list[dict[str, Any]]) -> bool:
        return bool(_signers(registry, repository, digest, _of_type(layers, SIMPLESIGNING_TYPE), [public]))

    return _append(registry, repository, signature_tag(digest), payload, layer, signed)


def push_attestation(
    registry: RegistryClient,
    repository: str,
    digest: str,
    statement: Mapping[str, Any],
    key: SigningKey,
    label: str | None = None,
) -> bool:
    """Attest ``statement`` (an in-toto statement about ``digest``) with ``key`` under ``sha256-<hex>.att``,
    its layer annotated with ``label`` when given (see ``LABEL_ANNOTATION``).

    False (nothing pushed) when the same statement signed by ``key`` is already there; with a label,
    as the newest layer of that label (a statement pushed again right after itself), so that a digest
    attested once per release is not read whole on each push. ``ValueError`` when ``statement`` is not
    an in-toto statement whose subjects include ``digest``."""
    predicate_type = statement.get("predicateType")
    body = canonical(dict(statement))
    if not isinstance(predicate_type, str) or _statement_about(body, digest, predicate_type) is None:
        raise ValueError(f"not an in-toto statement with {digest} among its subjects")
    envelope = dsse_envelope(statement, key)
    annotations = {SIGNATURE_ANNOTATION: "", PREDICATE_ANNOTATION: predicate_type}
    if label is not None:
        annotations[LABEL_ANNOTATION] = label
    layer = _descriptor(DSSE_TYPE, envelope, annotations)
    public = key.public

    def attested(layers: list[dict[str, Any]]) -> bool:
        for other in reversed(_of_type(layers, DSSE_TYPE)):
            if _annotation(other, PREDICATE_ANNOTATION) not in (None, predicate_type):
                continue
            if label is not None and _annotation(other, LABEL_ANNOTATION) != label:
                continue
            opened = _envelope_signers(registry.blob(repository, other["digest"]), [public])
            if opened is not None and opened[1] and _same_json(opened[0], body):
                return True
            if label is not None and opened is not None and opened[1]:
                return False  # the newest of its label, signed by this key, says something else
        return False

    return _append(registry, repository, attestation_tag(digest), envelope, layer, attested)
