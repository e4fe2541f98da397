"""``shipyard model-signature``: a released model's sigstore model-signing bundle, for ``model_signing verify``."""

from __future__ import annotations

import argparse
import json

from ..config.registry import parse_target
from ..errors import ConfigError, VerifyFailed
from ..oci.model_signature import read_model_signature
from ..record import write_atomic
from .console import Console
from .shared import _keys, _reachable_registry, _release


def cmd_model_signature(args: argparse.Namespace, console: Console) -> int:
    root, path, record = _release(args)
    model = record.models.get(args.model)
    if model is None:
        known = ", ".join(sorted(record.models)) or "none"
        raise ConfigError(
            f"--model {args.model}: release {record.release} ({path.name}) has no such model (it has: {known})"
        )
    target = parse_target(args.registry or record.registry)
    repository = model.repository.partition("/")[2]
    keys = _keys(root, target, console, need_signer=False)
    with _reachable_registry(target, console) as registry:
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
