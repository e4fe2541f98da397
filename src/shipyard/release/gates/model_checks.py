"""verify's checks of a release's models: each ModelPack artifact as the registry serves it, file by file.

A model is held to the spec (media types, one ``org.cncf.model.filepath`` per layer, the config's
diffIds), to its files (every layer's blob is in the registry at its size, and the bytes it serves hash
to its digest: the whole artifact is read once, streamed), to its size budget and to a signature by a
trusted key. Each check is a finding of the unit ``models/<name>``, beside the images' in the report.
"""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import RegistryError
from ...oci.client import RegistryClient
from ...oci.cosign import verified_signers
from ...oci.modelpack import describe, read_model, verify_model
from ...oci.signing import PublicKey
from ...record import ModelRecord
from .checks import Finding

MB = 1_000_000
MODEL_CHECKS = ("model", "size", "signature")  # what a model's signed verify verdict vouches for


def model_key(name: str) -> str:
    """The report's and the verdicts' name for a model: ``models/<name>``, as its repository ends."""
    return f"models/{name}"


def check_model(registry: RegistryClient, trusted: Sequence[PublicKey], name: str, model: ModelRecord) -> list[Finding]:
    """Every check of one model, failures naming the file."""
    key, path = model_key(name), model.repository.split("/", 1)[1]
    where = f"{model.repository}@{model.digest}"
    problems = verify_model(registry, path, model.digest, deep=True)
    if problems:
        expected = f"a ModelPack artifact whose files are intact: {where}"
        return [Finding(key, "model", "fail", expected, "; ".join(problems))]
    try:
        pack, _ = describe(*read_model(registry, path, model.digest))
    except RegistryError as exc:  # read a moment ago: the registry changed under us
        return [Finding(key, "model", "fail", where, str(exc))]
    findings = [Finding(key, "model", "pass", "a ModelPack artifact whose files are intact",
                        f"{len(pack.files)} files, {pack.size} bytes, every digest matches")]  # fmt: skip
    findings.append(_budget(key, model, pack.size))
    signers = verified_signers(registry, path, model.digest, trusted) if trusted else []
    findings.append(
        Finding(
            key,
            "signature",
            "pass" if signers else "fail",
            "a signature by a trusted key (sha256-<hex>.sig)",
            f"signed by {signers[0][:19]}…" if signers else "no signature by a trusted key",
        )  # fmt: skip
    )
    return findings


def _budget(key: str, model: ModelRecord, size: int) -> Finding:
    if model.budget_mb is None:
        return Finding(key, "size", "skip", "a size_budget_mb", "no budget in the catalog")
    within = size <= model.budget_mb * MB
    return Finding(key, "size", "pass" if within else "fail", f"<= {model.budget_mb} MB", f"{size / MB:.1f} MB")
