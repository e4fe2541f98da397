"""verify's checks: what one unit's image in the registry must show, each a finding that passes, fails or skips.

A check receives the image (``UnitImage``: the unit, its manifest and config, the release's tags and
revision it must carry) and what it may read of the registry (``Reads``), nothing of the verifier that
runs it; ``run_checks`` holds one image to a set of them, and a set of no checks is a failure, not a pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...build.sbom import InvalidSbom, components
from ...errors import RegistryError
from ...oci.attestations import AttestationMissing, find_provenance, read_sbom, sbom_subject
from ...oci.client import Manifest, RegistryClient
from ...oci.cosign import verified_signers
from ...oci.layers import LayerCache, setuid_or_setgid
from ...oci.signing import PublicKey
from ...record import UnitRecord

Status = Literal["pass", "fail", "skip"]
BIN_DIRS = ("bin/", "sbin/", "usr/bin/", "usr/sbin/", "usr/local/bin/", "usr/local/sbin/", "opt/venv/bin/")
BUILD_TOOL_RE = re.compile(
    r"^(?:[\w.-]+-)?(?:gcc|g\+\+|cc|c\+\+|clang|clang\+\+)(?:-\d+(?:\.\d+)*)?$|^(?:make|gmake|cmake|ninja)$"
)
PRIVILEGE_TOOL_RE = re.compile(r"^(?:sudo|doas|pkexec|sudoedit)$")
MB = 1_000_000


@dataclass(frozen=True)
class Finding:
    unit: str
    check: str
    status: Status
    expected: str = ""
    found: str = ""
    platform: str = ""  # which image of a multi-platform unit's index; "" for the unit as a whole


@dataclass
class UnitImage:
    """One unit as the registry has it: for a multi-platform unit, one platform's image of its index."""

    key: str
    unit: UnitRecord
    repository: str  # path inside the registry
    manifest: Manifest  # the platform's image manifest
    config: dict[str, Any]
    index: Manifest  # what the unit's digest names: the index holding ``manifest``, or ``manifest`` itself
    platform: str = ""  # the platform checked; "" when the unit has only its primary one
    aliases: tuple[str, ...] = ()  # the release's semver tags, each of which must name the unit's digest
    revision: str = ""  # the release's git revision, which a built (not reused) image's labels carry

    @property
    def os_arch(self) -> str:
        return self.platform or self.unit.platform

    @property
    def cfg(self) -> dict[str, Any]:
        return self.config.get("config") or {}

    @property
    def layers(self) -> list[str]:
        return [layer["digest"] for layer in self.manifest.json.get("layers", [])]

    @property
    def env(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.cfg.get("Env") or [] if "=" in item)


@dataclass(frozen=True)
class Reads:
    """What the checks may read of the registry: the client, its host (a parent elsewhere is not read), the
    layers' listings (read once for all units) and the keys a signature must be by."""

    registry: RegistryClient
    host: str
    layers: LayerCache
    trusted: tuple[PublicKey, ...] = ()

    @classmethod
    def of(
        cls, registry: RegistryClient, host: str, trusted: Sequence[PublicKey] = (), layer_cache: Path | None = None
    ) -> Reads:
        """``layer_cache``: where listings are kept between runs (None: in memory only)."""
        return cls(registry, host, LayerCache(registry, layer_cache, keep=checked_by_files), tuple(trusted))


Check = Callable[[UnitImage, Reads], Iterator[Finding]]


def check_name(check: Check) -> str:
    """``check_tag`` -> ``tag``: how the signed policy and a registry failure name a check."""
    return check.__name__.removeprefix("check_")


def run_checks(checks: Sequence[Check], image: UnitImage, reads: Reads) -> Iterator[Finding]:
    """Every finding of ``checks`` on ``image``; a registry that fails a check's read fails that check, and
    no check at all is a failure: an image held to nothing has not passed."""
    if not checks:
        yield Finding(image.key, "checks", "fail", "at least one check", "no check to run", image.platform)
    for check in checks:
        try:
            yield from list(check(image, reads))
        except RegistryError as exc:
            yield Finding(image.key, check_name(check), "fail", "registry answer", str(exc), image.platform)


def _result(image: UnitImage, check: str, ok: bool, expected: object, found: object) -> Finding:
    return Finding(image.key, check, "pass" if ok else "fail", str(expected), str(found), image.platform)


def check_tag(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    """The release tag and each semver alias of the release resolve to the unit's digest, one finding each.

    ``X.Y`` follows the newest ``X.Y.*`` release (as docker/metadata-action's tags do), so once a newer
    patch release took it, an older release's ``X.Y`` is no failure of that release: it is reported as a skip.
    """
    for tag in (image.unit.tag, *image.aliases):
        found = reads.registry.resolve(image.repository, tag)
        if found != image.unit.digest and found and tag.count(".") == 1:
            yield Finding(image.key, "tag", "skip", f"{tag} -> {image.unit.digest}", f"{tag} moved on to {found}")
            continue
        yield _result(image, "tag", found == image.unit.digest, f"{tag} -> {image.unit.digest}", found)


def check_platform(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    found = f"{image.config.get('os')}/{image.config.get('architecture')}"
    yield _result(image, "platform", found == image.os_arch, image.os_arch, found)


def check_user(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    expected = image.unit.expect.get("user", "10001:10001")
    found = image.cfg.get("User") or "(root)"
    yield _result(image, "user", found == expected, expected, found)


def check_healthcheck(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    test = (image.cfg.get("Healthcheck") or {}).get("Test") or []
    ok = bool(test) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1
    yield _result(image, "healthcheck", ok, "a HEALTHCHECK command", " ".join(test) or "(none)")


def check_tini(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    entrypoint = image.cfg.get("Entrypoint") or []
    ok = bool(entrypoint) and entrypoint[0].rsplit("/", 1)[-1] in ("tini", "tini-static")
    yield _result(image, "tini", ok, "entrypoint starting with tini", entrypoint or "(none)")


def check_env(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    env = image.env
    expected: dict[str, str] = image.unit.expect.get("env", {"PYTHONUNBUFFERED": "1"})
    wrong = {k: env.get(k, "(unset)") for k, value in expected.items() if env.get(k) != value}
    yield _result(image, "env", not wrong, {k: expected[k] for k in wrong} or "profile env", wrong or "as expected")


def check_port(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    port = image.unit.expect.get("port")
    if port is None:
        return
    exposed = sorted(image.cfg.get("ExposedPorts") or {})
    yield _result(image, "port", f"{port}/tcp" in exposed, f"{port}/tcp exposed", exposed or "(none)")


def check_labels(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    labels = image.cfg.get("Labels") or {}
    expected: dict[str, str] = dict(image.unit.expect.get("labels") or {})
    if not image.unit.reused_from:  # a reused image keeps the revision and version of the release that built it
        expected["org.opencontainers.image.revision"] = image.revision
        expected["org.opencontainers.image.version"] = image.unit.tag
    wrong = {k: labels.get(k, "(unset)") for k, value in expected.items() if labels.get(k) != value}
    for name in image.unit.expect.get("required_labels", []):  # the project's [policy]: any value, not empty
        if not labels.get(name):
            expected[name], wrong[name] = "(any value, required by [policy])", "(unset)"
    yield _result(
        image, "labels", not wrong, {k: expected[k] for k in wrong} or "OCI + shipyard labels", wrong or "as expected"
    )


def check_parent(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    parent = image.unit.parent
    pinned = "@sha256:" in parent
    yield _result(image, "parent-pinned", pinned, "parent referenced by digest", parent)
    host, _, rest = parent.partition("/")
    if not pinned or host != reads.host:
        yield Finding(
            image.key,
            "parent-layers",
            "skip",
            "parent's layers a prefix of the image's",
            f"parent in another registry ({host})",
            image.platform,
        )
        return
    repository, _, digest = rest.partition("@")
    parent_manifest = reads.registry.image_manifest(repository, digest, image.os_arch)
    parent_layers = [layer["digest"] for layer in (parent_manifest.json if parent_manifest else {}).get("layers", [])]
    ok = bool(parent_layers) and image.layers[: len(parent_layers)] == parent_layers
    yield _result(
        image,
        "parent-layers",
        ok,
        f"{len(parent_layers)} layers of {parent[:80]} first",
        "prefix" if ok else f"{len(image.layers)} layers, not starting with the parent's",
    )


def check_size(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    budget = image.unit.expect.get("size_budget_mb")
    if budget is None:
        return
    size = image.manifest.compressed_size
    yield _result(image, "size", size <= budget * MB, f"<= {budget} MB", f"{size / MB:.1f} MB")


def check_files(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    files = reads.layers.filesystem(image.repository, image.layers)
    tools = sorted(p for p in files if _in_bin(p) and BUILD_TOOL_RE.match(p.rsplit("/", 1)[-1]))
    yield _result(image, "no-build-tools", not tools, "no compiler or build tool", tools or "none")
    privileged = sorted(p for p in files if _in_bin(p) and PRIVILEGE_TOOL_RE.match(p.rsplit("/", 1)[-1]))
    privileged += sorted(p for p, e in files.items() if e.setuid_or_setgid)
    yield _result(
        image, "no-privilege-tools", not privileged, "no sudo/doas and no setuid/setgid file", privileged or "none"
    )


def check_provenance(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    expected = "SLSA provenance attestation of the image in its index"
    try:
        found = find_provenance(reads.registry, image.repository, image.index, image.manifest.digest)
    except AttestationMissing as exc:
        yield _result(image, "provenance", False, expected, exc)
        return
    yield _result(image, "provenance", True, expected, f"{found.predicate_type} ({found.manifest[:19]})")


def check_sbom(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    """The platform's own SBOM: a multi-platform unit's refers to the platform manifest, not the index."""
    subject = sbom_subject(image.unit.digest, image.manifest.digest, bool(image.platform))
    expected = "CycloneDX SBOM referrer with components" + (f" of the {image.platform} image" if image.platform else "")
    try:
        sbom = read_sbom(reads.registry, image.repository, subject)
        count = components(sbom.document)
    except (AttestationMissing, InvalidSbom) as exc:
        yield _result(image, "sbom", False, expected, exc)
        return
    yield _result(image, "sbom", True, expected, f"{count} components ({sbom.manifest[:19]})")


def check_signature(image: UnitImage, reads: Reads) -> Iterator[Finding]:
    """The unit's digest carries a cosign signature by a trusted key (``[project] trusted_keys``)."""
    expected = "a signature by a trusted key (sha256-<hex>.sig)"
    digest, trusted = image.unit.digest, reads.trusted
    signers = verified_signers(reads.registry, image.repository, digest, trusted) if trusted else []
    found = f"signed by {signers[0][:19]}…" if signers else "no signature by a trusted key"
    yield _result(image, "signature", bool(signers), expected, found)


def _in_bin(path: str) -> bool:
    return path.rpartition("/")[0] + "/" in BIN_DIRS


def checked_by_files(path: str, mode: int, is_file: bool) -> bool:
    """Whether ``check_files`` looks at an entry: a program in a bin directory, or a setuid/setgid file
    (a verifier's file systems hold these alone)."""
    return _in_bin(path) or setuid_or_setgid(mode, is_file)


CHECKS: tuple[Check, ...] = (
    check_tag,
    check_platform,
    check_user,
    check_healthcheck,
    check_tini,
    check_env,
    check_port,
    check_labels,
    check_parent,
    check_size,
    check_files,
    check_provenance,
    check_sbom,
    check_signature,
)
# what the unit's digest has once (its tags, its signature) is checked with the primary platform only; every
# other check, the SBOM included (each platform manifest has its own), on each platform's image
PER_PLATFORM: tuple[Check, ...] = tuple(c for c in CHECKS if c not in (check_tag, check_signature))
