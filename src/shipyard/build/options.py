"""What a build is given: its options, and the outside world injected (``BuildContext``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config.project import Project
from ..events import Emit
from ..oci.client import RegistryClient
from ..oci.credentials import Credentials
from ..oci.reference import RegistryNamespace
from ..oci.signing import SigningKey
from ..runner import Runner
from . import default_jobs
from .revision import Revision

REUSE_LOOKUPS = 8  # units looked up in the registry at once; builds stay at --jobs


@dataclass(frozen=True)
class BuildOptions:
    target: RegistryNamespace
    profiles: Sequence[str] = ()
    images: Sequence[str] = ()
    builder: str | None = None
    jobs: int = field(default_factory=default_jobs)
    reuse: bool = True
    attest: bool = True  # provenance from buildx and our own SBOM referrer (build/attach.py)


@dataclass
class BuildContext:
    """Everything a build needs from outside: injected so tests can replace any part."""

    project: Project
    revision: Revision
    runner: Runner
    registry: RegistryClient
    cache_dir: Path
    emit: Emit
    # Run once, before the first unit that really builds (engine preflight, docker login): a release
    # whose units are all reused needs no engine at all.
    before_first_build: Callable[[], None] | None = None
    credentials: Credentials | None = None  # for Trivy reading the pushed image (SBOM); never in argv
    signer: SigningKey | None = None  # signs every pushed digest (cosign's layout); None: left unsigned
    # a client for another registry a model's ``from`` names (read only); None: its docker login, if any
    registry_for: Callable[[str], RegistryClient] | None = None
