"""cosign's signature and attestation layout, on the in-memory registry: what is written, what counts."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from shipyard.config.registry import parse_registry
from shipyard.errors import RegistryError
from shipyard.oci import cosign
from shipyard.oci.client import RegistryClient
from shipyard.oci.signing import PublicKey, SigningKey
from tests.attested import in_toto_statement
from tests.memregistry import MemoryRegistry, digest_of

OCI = "application/vnd.oci.image.manifest.v1+json"
REPO = "acme/cpu/svc"
REFERENCE = "localhost:5000/acme/cpu/svc"
VSA = "https://slsa.dev/verification_summary/v1"


def image(reg: MemoryRegistry, name: str) -> str:
    return reg.put(REPO, name, json.dumps({"schemaVersion": 2, "mediaType": OCI, "n": name}).encode(), OCI)


@pytest.fixture
def reg() -> MemoryRegistry:
    return MemoryRegistry()


@pytest.fixture
def client(reg: MemoryRegistry) -> RegistryClient:
    return RegistryClient(parse_registry("localhost:5000/acme"), transport=reg.transport())


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, SigningKey]:
    return SigningKey.generate(), SigningKey.generate()


def stored(reg: MemoryRegistry, tag: str) -> dict[str, Any]:
    body, media_type = reg.manifests[(REPO, reg.tags[(REPO, tag)])]
    assert media_type == OCI
    doc: dict[str, Any] = json.loads(body)
    return doc


def manifest_puts(reg: MemoryRegistry) -> list[str]:
    return [path for method, path in reg.requests if method == "PUT" and "/manifests/" in path]


def newest(
    client: RegistryClient, digest: str, keys: list[PublicKey], predicate_type: str
) -> list[tuple[str, dict[str, Any]]]:
    """What the gates read: the statements about ``digest`` signed by ``keys``, newest first."""
    return list(cosign.newest_statements(client, REPO, digest, keys, predicate_type))


def vsa(digest: str, result: str = "PASSED") -> dict[str, Any]:
    return in_toto_statement(REFERENCE, digest, VSA, {"verificationResult": result, "verifier": {"id": "t"}})


def test_tags_are_cosigns_digest_tags() -> None:
    digest = "sha256:" + "ab" * 32
    assert cosign.signature_tag(digest) == "sha256-" + "ab" * 32 + ".sig"
    assert cosign.attestation_tag(digest) == "sha256-" + "ab" * 32 + ".att"
    for bad in ("sha256:abc", "sha512:" + "ab" * 64, "ab" * 32, "sha256:" + "AB" * 32):
        with pytest.raises(ValueError, match="not a sha256 digest"):
            cosign.signature_tag(bad)


def test_the_payload_is_byte_for_byte_what_cosign_signs() -> None:
    # the blob `cosign sign` (2.5) pushed for localhost:5000/shipyard-it-cosign/probe@sha256:73f7…
    digest = "sha256:73f7ca33d63fd9df922d7e860f81363e12dd3009936ba074bff39de9e8b75f35"
    cosigns = (
        b'{"critical":{"identity":{"docker-reference":"localhost:5000/shipyard-it-cosign/probe"},'
        b'"image":{"docker-manifest-digest":"' + digest.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    assert cosign.simple_signing_payload("localhost:5000/shipyard-it-cosign/probe", digest) == cosigns
    with_annotations = json.loads(cosign.simple_signing_payload("r", digest, {"b": "2", "a": "1"}))
    assert with_annotations["optional"] == {"a": "1", "b": "2"}


def test_a_signature_is_a_simplesigning_layer_in_an_oci_manifest_under_the_sig_tag(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest = image(reg, "v1")
    assert cosign.push_signature(client, REPO, digest, REFERENCE, keys[0]) is True
    doc = stored(reg, cosign.signature_tag(digest))
    assert doc["mediaType"] == OCI and doc["schemaVersion"] == 2
    (layer,) = doc["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = reg.blobs[layer["digest"]]
    assert layer["size"] == len(payload) and payload == cosign.simple_signing_payload(REFERENCE, digest)
    assert set(layer["annotations"]) == {"dev.cosignproject.cosign/signature"}
    assert keys[0].public.verify(payload, base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"]))
    assert doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    config = reg.blobs[doc["config"]["digest"]]
    assert doc["config"]["size"] == len(config)
    assert json.loads(config) == {
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
        "config": {},
    }
    assert cosign.verified_signers(client, REPO, digest, [keys[0].public]) == [keys[0].public.key_id]


def test_a_second_key_appends_a_layer_and_signing_again_pushes_nothing(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest = image(reg, "v1")
    first, second = keys
    assert cosign.push_signature(client, REPO, digest, REFERENCE, first)
    assert cosign.push_signature(client, REPO, digest, REFERENCE, second)
    doc = stored(reg, cosign.signature_tag(digest))
    assert len(doc["layers"]) == 2
    assert json.loads(reg.blobs[doc["config"]["digest"]])["rootfs"]["diff_ids"] == [d["digest"] for d in doc["layers"]]
    puts = len(manifest_puts(reg))
    assert cosign.push_signature(client, REPO, digest, REFERENCE, first) is False
    assert cosign.push_signature(client, REPO, digest, REFERENCE, second) is False
    assert len(manifest_puts(reg)) == puts and len(stored(reg, cosign.signature_tag(digest))["layers"]) == 2
    both = [first.public, second.public]
    assert cosign.verified_signers(client, REPO, digest, both) == [k.key_id for k in both]
    assert cosign.verified_signers(client, REPO, digest, [second.public, second.public]) == [second.public.key_id]


def test_layers_of_other_tools_are_kept_as_they_are(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest = image(reg, "v1")
    foreign = {
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "size": 3,
        "digest": digest_of(b"abc"),
        "annotations": {"dev.cosignproject.cosign/signature": "AAAA", "dev.sigstore.cosign/bundle": "{}"},
    }
    reg.blobs[digest_of(b"abc")] = b"abc"
    reg.put(REPO, cosign.signature_tag(digest), json.dumps({"mediaType": OCI, "layers": [foreign]}).encode(), OCI)
    assert cosign.push_signature(client, REPO, digest, REFERENCE, keys[0])
    layers = stored(reg, cosign.signature_tag(digest))["layers"]
    assert layers[0] == foreign and len(layers) == 2
    assert cosign.verified_signers(client, REPO, digest, [keys[0].public]) == [keys[0].public.key_id]


def test_a_signature_copied_from_another_digest_does_not_count(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    signed, other = image(reg, "v1"), image(reg, "v2")
    cosign.push_signature(client, REPO, signed, REFERENCE, keys[0])
    copied = reg.tags[(REPO, cosign.signature_tag(signed))]
    reg.tags[(REPO, cosign.signature_tag(other))] = copied
    assert cosign.verified_signers(client, REPO, other, [keys[0].public]) == []
    # and signing `other` for real appends next to the copy, which still does not count for it
    assert cosign.push_signature(client, REPO, other, REFERENCE, keys[0]) is True
    assert len(stored(reg, cosign.signature_tag(other))["layers"]) == 2
    assert cosign.verified_signers(client, REPO, other, [keys[0].public]) == [keys[0].public.key_id]


def test_a_payload_the_registry_name_gives_is_not_fetched_and_any_other_is(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest = image(reg, "v1")
    cosign.push_signature(client, REPO, digest, REFERENCE, keys[0])  # the name this client reaches it by
    cosign.push_signature(client, REPO, digest, "mirror.example/acme/cpu/svc", keys[1])
    reg.requests.clear()
    fresh = RegistryClient(parse_registry("localhost:5000/acme"), transport=reg.transport())
    public = [keys[0].public, keys[1].public]
    assert cosign.verified_signers(fresh, REPO, digest, public) == [k.key_id for k in public]
    mirrored = digest_of(cosign.simple_signing_payload("mirror.example/acme/cpu/svc", digest))
    assert [p for m, p in reg.requests if "/blobs/" in p] == [f"/v2/{REPO}/blobs/{mirrored}"]


def signed_layer(reg: MemoryRegistry, payload: bytes, signature: bytes) -> dict[str, Any]:
    reg.blobs[digest_of(payload)] = payload
    return {
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "size": len(payload),
        "digest": digest_of(payload),
        "annotations": {"dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()},
    }


def put_layers(reg: MemoryRegistry, tag: str, layers: list[dict[str, Any]]) -> None:
    reg.put(REPO, tag, json.dumps({"schemaVersion": 2, "mediaType": OCI, "layers": layers}).encode(), OCI)


def test_a_tampered_payload_a_wrong_digest_or_type_and_an_untrusted_key_do_not_count(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest, other = image(reg, "v1"), image(reg, "v2")
    trusted, untrusted = keys
    genuine = cosign.simple_signing_payload(REFERENCE, other)
    tampered = genuine.replace(other.encode(), digest.encode())  # same signature, payload moved to `digest`
    wrong_type = json.loads(cosign.simple_signing_payload(REFERENCE, digest))
    wrong_type["critical"]["type"] = "something else"
    wrong_type_payload = json.dumps(wrong_type).encode()
    put_layers(
        reg,
        cosign.signature_tag(digest),
        [
            signed_layer(reg, tampered, trusted.sign(genuine)),
            signed_layer(reg, genuine, trusted.sign(genuine)),  # valid, but names `other`
            signed_layer(reg, wrong_type_payload, trusted.sign(wrong_type_payload)),
            signed_layer(reg, b"not json", trusted.sign(b"not json")),
            {**signed_layer(reg, b"x", b""), "annotations": {"dev.cosignproject.cosign/signature": "%%%"}},
            {**signed_layer(reg, b"y", b""), "annotations": ["not", "a", "map"]},
            signed_layer(reg, cosign.simple_signing_payload(REFERENCE, digest), b"\x30\x06\x02\x01\x01\x02\x01\x01"),
        ],
    )
    assert cosign.verified_signers(client, REPO, digest, [trusted.public]) == []
    cosign.push_signature(client, REPO, digest, REFERENCE, untrusted)
    assert cosign.verified_signers(client, REPO, digest, [trusted.public]) == []
    assert cosign.verified_signers(client, REPO, digest, [trusted.public, untrusted.public]) == [
        untrusted.public.key_id
    ]


def test_no_tag_or_a_tag_holding_something_else(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest = image(reg, "v1")
    assert cosign.verified_signers(client, REPO, digest, [keys[0].public]) == []
    assert newest(client, digest, [keys[0].public], VSA) == []
    index = "application/vnd.oci.image.index.v1+json"
    reg.put(REPO, cosign.signature_tag(digest), json.dumps({"mediaType": index, "manifests": []}).encode(), index)
    assert cosign.verified_signers(client, REPO, digest, [keys[0].public]) == []
    with pytest.raises(RegistryError, match=r"\.sig holds a application/vnd.oci.image.index.v1\+json, not a cosign"):
        cosign.push_signature(client, REPO, digest, REFERENCE, keys[0])


def test_pae_of_the_dsse_spec_example_and_its_signature() -> None:
    encoded = cosign.pae("http://example.com/HelloWorld", b"hello world")
    assert encoded == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    # the spec's test vector: its P-256 key and (raw r||s) signature verify over exactly these bytes
    x = 46950820868899156662930047687818585632848591499744589407958293238635476079160
    y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
    spec_key = PublicKey(ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key())
    raw = base64.b64decode("A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA==")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    assert spec_key.verify(encoded, der)
    assert not spec_key.verify(cosign.pae("http://example.com/HelloWorld", b"hello world!"), der)
    assert cosign.pae("t", b"") == b"DSSEv1 1 t 0 "
    assert cosign.pae("é", b"\x00") == b"DSSEv1 2 \xc3\xa9 1 \x00"  # byte lengths, not characters


def test_an_attestation_is_a_dsse_layer_under_the_att_tag(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest = image(reg, "v1")
    statement = vsa(digest)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": REFERENCE, "digest": {"sha256": digest.removeprefix("sha256:")}}]
    assert cosign.push_attestation(client, REPO, digest, statement, keys[0]) is True
    doc = stored(reg, cosign.attestation_tag(digest))
    (layer,) = doc["layers"]
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert layer["annotations"] == {"dev.cosignproject.cosign/signature": "", "predicateType": VSA}
    envelope = json.loads(reg.blobs[layer["digest"]])
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    body = base64.b64decode(envelope["payload"])
    assert json.loads(body) == statement
    (signature,) = envelope["signatures"]
    assert signature["keyid"] == ""
    assert keys[0].public.verify(cosign.pae("application/vnd.in-toto+json", body), base64.b64decode(signature["sig"]))
    assert json.loads(reg.blobs[doc["config"]["digest"]])["rootfs"]["diff_ids"] == [layer["digest"]]
    assert newest(client, digest, [keys[0].public], VSA) == [(keys[0].public.key_id, statement)]
    assert newest(client, digest, [keys[0].public], "https://slsa.dev/provenance/v1") == []
    assert newest(client, digest, [keys[1].public], VSA) == []


def test_attestations_append_and_the_same_one_again_pushes_nothing(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest = image(reg, "v1")
    passed, failed = vsa(digest), vsa(digest, "FAILED")
    assert cosign.push_attestation(client, REPO, digest, passed, keys[0])
    assert cosign.push_attestation(client, REPO, digest, passed, keys[1])
    assert cosign.push_attestation(client, REPO, digest, failed, keys[0])
    puts = len(manifest_puts(reg))
    assert cosign.push_attestation(client, REPO, digest, passed, keys[0]) is False
    assert len(manifest_puts(reg)) == puts
    assert len(stored(reg, cosign.attestation_tag(digest))["layers"]) == 3
    found = newest(client, digest, [keys[0].public, keys[1].public], VSA)
    assert found == [(keys[0].public.key_id, failed), (keys[1].public.key_id, passed), (keys[0].public.key_id, passed)]


def dsse_layer(reg: MemoryRegistry, envelope: bytes, predicate_type: str | None = VSA) -> dict[str, Any]:
    reg.blobs[digest_of(envelope)] = envelope
    annotations = {"predicateType": predicate_type} if predicate_type else {}
    return {
        "mediaType": "application/vnd.dsse.envelope.v1+json",
        "size": len(envelope),
        "digest": digest_of(envelope),
        "annotations": annotations,
    }


def test_a_statement_about_another_digest_a_tampered_envelope_or_a_mislabelled_one_does_not_count(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest, other = image(reg, "v1"), image(reg, "v2")
    key = keys[0]
    about_other = cosign.dsse_envelope(vsa(other), key)  # valid, but its subject is `other`
    genuine = json.loads(cosign.dsse_envelope(vsa(digest, "FAILED"), key))
    forged_body = json.dumps(vsa(digest)).encode()
    tampered = json.dumps({**genuine, "payload": base64.b64encode(forged_body).decode()}).encode()
    mistyped = json.dumps({**genuine, "payloadType": "application/json"}).encode()
    v1_type_says_provenance = in_toto_statement(REFERENCE, digest, "https://slsa.dev/provenance/v1", {})
    old_statement = {**vsa(digest), "_type": "https://in-toto.io/Statement/v0.1"}
    unknown_statement = {**vsa(digest), "_type": "https://example.com/Statement"}
    put_layers(
        reg,
        cosign.attestation_tag(digest),
        [
            dsse_layer(reg, about_other),
            dsse_layer(reg, tampered),
            dsse_layer(reg, mistyped),
            dsse_layer(reg, b"{not json"),
            {**dsse_layer(reg, b"[]"), "annotations": "not a map"},
            dsse_layer(reg, cosign.dsse_envelope(v1_type_says_provenance, key)),  # annotated VSA, is not
            dsse_layer(reg, cosign.dsse_envelope(vsa(digest, "LABELLED"), key), "https://slsa.dev/provenance/v1"),
            dsse_layer(reg, cosign.dsse_envelope(unknown_statement, key)),
            dsse_layer(reg, cosign.dsse_envelope(old_statement, key), None),  # cosign 2.x writes v0.1: counts
        ],
    )
    assert newest(client, digest, [key.public], VSA) == [(key.public.key_id, old_statement)]
    assert newest(client, digest, [keys[1].public], VSA) == []


def test_an_envelope_in_url_safe_base64_is_read() -> None:
    key = SigningKey.generate()
    digest = "sha256:" + "cd" * 32
    envelope = json.loads(cosign.dsse_envelope(vsa(digest), key))
    for entry in envelope["signatures"]:
        entry["sig"] = base64.urlsafe_b64encode(base64.b64decode(entry["sig"])).decode().rstrip("=")
    envelope["payload"] = base64.urlsafe_b64encode(base64.b64decode(envelope["payload"])).decode().rstrip("=")
    reg = MemoryRegistry()
    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=reg.transport())
    put_layers(reg, cosign.attestation_tag(digest), [dsse_layer(reg, json.dumps(envelope).encode())])
    assert newest(client, digest, [key.public], VSA) == [(key.public.key_id, vsa(digest))]


def test_a_statement_not_about_the_digest_is_refused_before_anything_is_pushed(
    reg: MemoryRegistry, client: RegistryClient, keys: tuple[SigningKey, SigningKey]
) -> None:
    digest, other = image(reg, "v1"), image(reg, "v2")
    for statement in (
        vsa(other),
        {**vsa(digest), "_type": "x"},
        {k: v for k, v in vsa(digest).items() if k != "predicateType"},
    ):
        with pytest.raises(ValueError, match="not an in-toto statement with sha256:"):
            cosign.push_attestation(client, REPO, digest, statement, keys[0])
    assert manifest_puts(reg) == []


def test_a_concurrent_writer_that_dropped_our_layer_is_merged_with_again(keys: tuple[SigningKey, SigningKey]) -> None:
    """Another gate wrote the .att tag between our PUT and our re-read, from the tag as it was before ours."""
    reg = MemoryRegistry()
    digest = image(reg, "v1")
    tag = cosign.attestation_tag(digest)
    ours, theirs = keys
    rival_envelope = cosign.dsse_envelope(vsa(digest, "FAILED"), theirs)
    rival = json.dumps({"schemaVersion": 2, "mediaType": OCI, "layers": [dsse_layer(reg, rival_envelope)]}).encode()
    raced: list[bool] = []

    def handle(request: httpx.Request) -> httpx.Response:
        response = reg.handle(request)
        if request.method == "PUT" and request.url.path.endswith(f"/manifests/{tag}") and not raced:
            raced.append(True)
            reg.put(REPO, tag, rival, OCI)  # the rival's write lands right after ours, without our layer
        return response

    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=httpx.MockTransport(handle))
    assert cosign.push_attestation(client, REPO, digest, vsa(digest), ours) is True
    assert raced and len(manifest_puts(reg)) == 2
    found = newest(client, digest, [ours.public, theirs.public], VSA)
    assert found == [(ours.public.key_id, vsa(digest)), (theirs.public.key_id, vsa(digest, "FAILED"))]


def test_a_tag_rewritten_on_every_attempt_is_a_registry_error(keys: tuple[SigningKey, SigningKey]) -> None:
    reg = MemoryRegistry()
    digest = image(reg, "v1")
    tag = cosign.signature_tag(digest)
    empty = json.dumps({"schemaVersion": 2, "mediaType": OCI, "layers": []}).encode()

    def handle(request: httpx.Request) -> httpx.Response:
        response = reg.handle(request)
        if request.method == "PUT" and request.url.path.endswith(f"/manifests/{tag}"):
            reg.put(REPO, tag, empty, OCI)
        return response

    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=httpx.MockTransport(handle))
    with pytest.raises(RegistryError, match=r"\.sig was rewritten by another writer 5 times"):
        cosign.push_signature(client, REPO, digest, REFERENCE, keys[0])
