"""Fills model volumes in a one-shot container (standard library only; not imported by shipyard): each
model's manifest and blobs by digest, every file hashed on the way. Input ``MODELS_TO_FILL`` (a JSON list);
output one JSON line per model, or ``error: <one line>`` on stderr and exit status 1."""

import hashlib
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from typing import Any

MARKER = ".shipyard-model.json"
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json"
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
CHUNK = 1 << 20


class FillFailed(Exception):
    """One line: what is wrong, naming the model and the file."""


def _base(registry: str) -> str:
    host = registry.split(":", 1)[0] if not registry.startswith("[") else registry.split("]", 1)[0] + "]"
    scheme = "http" if host in LOOPBACK else "https"
    return f"{scheme}://{registry}"


def _token(challenge: str) -> str:
    """An anonymous bearer token for a registry that asks for one (``WWW-Authenticate: Bearer …``)."""
    fields = dict(part.split("=", 1) for part in challenge[len("Bearer ") :].replace('"', "").split(","))
    realm = fields.pop("realm")
    query = "&".join(f"{k}={v}" for k, v in fields.items())
    with urllib.request.urlopen(f"{realm}?{query}", timeout=60) as answer:
        body = json.load(answer)
    return str(body.get("token") or body.get("access_token"))


def _open(url: str, accept: str, auth: dict[str, str]) -> Any:
    request = urllib.request.Request(url, headers={"Accept": accept, **auth})
    try:
        return urllib.request.urlopen(request, timeout=300)
    except urllib.error.HTTPError as exc:
        challenge = exc.headers.get("WWW-Authenticate", "")
        if exc.code == 401 and challenge.startswith("Bearer ") and "Authorization" not in auth:
            auth["Authorization"] = f"Bearer {_token(challenge)}"
            return _open(url, accept, auth)
        raise FillFailed(f"{url}: HTTP {exc.code}") from None


def _safe(path: str, name: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or parts[0].startswith("."):
        raise FillFailed(f"model {name}: {path!r} is not a relative path inside the model")
    return path


def _stream(response: Any, target: str, digest: str, size: int, name: str, path: str) -> tuple[str, int]:
    hasher, length = hashlib.sha256(), 0
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target + ".partial", "wb") as out:
        while chunk := response.read(CHUNK):
            hasher.update(chunk)
            length += len(chunk)
            out.write(chunk)
    served = "sha256:" + hasher.hexdigest()
    if served != digest or (size >= 0 and length != size):
        raise FillFailed(
            f"model {name}: file {path}: the registry served {length} bytes hashing to {served}, "
            f"not {size} bytes of {digest}: the model was changed in the registry; nothing was deployed"
        )
    return target + ".partial", length


def _extract(archive: str, mount: str, name: str, path: str) -> None:
    """A tar layer (another tool's ModelPack): its regular files and directories, nothing that leaves the model."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()):
                raise FillFailed(f"model {name}: layer {path}: {member.name} is a link or device, not a file")
            _safe(member.name.removeprefix("./"), name)
            tar.extract(member, mount, set_attrs=False)
    os.remove(archive)


def fill(model: dict[str, str]) -> dict[str, Any]:
    name, mount, digest = model["name"], model["mount"], model["digest"]
    marker = os.path.join(mount, MARKER)
    started = time.monotonic()
    try:
        with open(marker) as held:
            if json.load(held).get("digest") == digest:
                return {"name": name, "state": "present", "files": 0, "bytes": 0, "seconds": 0.0}
    except (OSError, ValueError):
        pass
    for entry in os.listdir(mount):  # a fill cut short: start over
        full = os.path.join(mount, entry)
        shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.remove(full)
    base, auth = _base(model["registry"]), dict[str, str]()
    with _open(f"{base}/v2/{model['repository']}/manifests/{digest}", MANIFEST_TYPES, auth) as answer:
        raw = answer.read()
    if "sha256:" + hashlib.sha256(raw).hexdigest() != digest:
        raise FillFailed(f"model {name}: the registry's manifest does not hash to {digest}")
    layers = json.loads(raw).get("layers") or []
    total = 0
    for layer in layers:
        annotations = layer.get("annotations") or {}
        path = _safe(annotations.get("org.cncf.model.filepath") or annotations.get("org.opencontainers.image.title")
                     or "", name)  # fmt: skip
        blob = f"{base}/v2/{model['repository']}/blobs/{layer['digest']}"
        with _open(blob, "*/*", auth) as answer:
            written, length = _stream(answer, os.path.join(mount, path), layer["digest"], layer.get("size", -1), name,
                                      path)  # fmt: skip
        total += length
        form = layer.get("mediaType", "").rsplit(".v1.", 1)[-1]
        if form == "raw":
            os.chmod(written, 0o444)
            os.replace(written, os.path.join(mount, path))
        elif form in ("tar", "tar+gzip"):
            _extract(written, mount, name, path)
        else:
            kind = layer.get("mediaType")
            raise FillFailed(f"model {name}: layer {path}: media type {kind} is not raw, tar or tar+gzip")
    with open(marker, "w") as out:
        json.dump({"name": name, "digest": digest, "files": len(layers), "bytes": total}, out)
    return {"name": name, "state": "filled", "files": len(layers), "bytes": total,
            "seconds": round(time.monotonic() - started, 2)}  # fmt: skip


def main() -> int:
    try:
        for model in json.loads(os.environ["MODELS_TO_FILL"]):
            print(json.dumps(fill(model)), flush=True)
    except FillFailed as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
