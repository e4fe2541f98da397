"""``shipyard model-signature``, its options, help and handler: a released model's sigstore model-signing
bundle, for ``model_signing verify``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..config.registry import parse_registry
from ..errors import ConfigError, VerifyFailed
from ..oci.model_signature import read_model_signature
from ..record import write_atomic
from .console import Console
from .options import OLD_RELEASE, REGISTRY, RELEASE, Arguments, Option
from .shared import reachable_registry, release_record, signing_keys
from .verb import Verb


@dataclass(frozen=True, kw_only=True)
class ModelSignatureArgs(Arguments):
    release: str | None
    model: str
    output: Path
    public_key: Path | None
    registry: str | None


def cmd_model_signature(args: ModelSignatureArgs, console: Console) -> int:
    root, path, record = release_record(args)
    model = record.models.get(args.model)
    if model is None:
        known = ", ".join(sorted(record.models)) or "none"
        raise ConfigError(
            f"--model {args.model}: release {record.release} ({path.name}) has no such model (it has: {known})"
        )
    target = parse_registry(args.registry or record.registry)
    repository = model.repository.partition("/")[2]
    keys = signing_keys(root, target, console, need_signer=False)
    with reachable_registry(target, console) as registry:
        found = read_model_signature(registry, repository, model.digest, keys.trusted)
    if found is None:
        raise VerifyFailed(
            f"--model {args.model}: no model-signing bundle of {model.ref} signed by a trusted key "
            f"({len(keys.trusted)} trusted) over its files"
        )
    bundle, signer = found
    write_atomic(args.output, bundle.decode())
    if args.public_key is not None:
        write_atomic(args.public_key, signer.pem().decode())
    if args.json:
        found_at = {"model": args.model, "digest": model.digest, "signature": str(args.output), "key": signer.key_id}
        console.data(json.dumps(found_at, sort_keys=True))
        return 0
    console.line(f"wrote {args.output}: {args.model} {model.digest[:19]}, signed by {signer.key_id[:19]}…")
    key = args.public_key or "KEY.pub"
    console.line(f"check the files: model_signing verify key DIR --signature {args.output} --public_key {key}")
    return 0


VERBS = (
    Verb(
        "model-signature",
        help="write a released model's sigstore model-signing bundle (and its key) for `model_signing verify key`",
        example="shipyard model-signature --model affect-nb -o model.sig --public-key model.pub && "
        "model_signing verify key models/affect-nb --signature model.sig --public_key model.pub",
        args=ModelSignatureArgs,
        run=cmd_model_signature,
        options=(
            RELEASE,
            OLD_RELEASE,
            Option(("--model",), required=True, metavar="NAME", help="a model of the release (shipyard.toml [models])"),
            Option(("-o", "--output"), type=Path, required=True, metavar="FILE", help="where to write the bundle"),
            Option(
                ("--public-key",), type=Path, metavar="FILE", help="also write the trusted key that signed it (PEM)"
            ),
            REGISTRY,
        ),
    ),
)
