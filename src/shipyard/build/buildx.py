"""One buildx invocation: a frozen request, its argv, and what its output tells.

We build the argv ourselves instead of going through python-on-whales so that the exact
command is what ``--dry-run`` and ``-v`` print, what unit tests assert, and what runs
through the one ``Runner``, and so that ``--progress plain`` lines can be read as they
stream (cache hits, current step).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError
from ..oci.credentials import Credentials
from ..oci.reference import RegistryNamespace
from ..runner import Runner


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: Path
    tag: str
    platform: str
    cache_ref: str
    metadata_file: Path
    build_args: Mapping[str, str] = field(default_factory=dict)
    build_contexts: Mapping[str, Path] = field(default_factory=dict)
    builder: str | None = None
    push: bool = True
    cache_from: bool = True
    cache_to: bool = True
    extra_tags: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()  # env var names: BuildKit secrets, never build args (they'd be in the image)
    # BuildKit's SLSA provenance attestation, pushed inside the image index; None leaves it out
    provenance: str | None = "mode=max"

    def argv(self, docker: str = "docker") -> list[str]:
        cmd = [docker, "buildx", "build"]
        if self.builder:
            cmd += ["--builder", self.builder]
        cmd += ["--progress", "plain", "--file", str(self.dockerfile), "--platform", self.platform]
        for name, value in self.build_args.items():
            cmd += ["--build-arg", f"{name}={value}"]
        for name, path in self.build_contexts.items():
            cmd += ["--build-context", f"{name}={path}"]
        for name in self.secrets:
            cmd += ["--secret", f"id={name},env={name}"]  # the value stays in the environment, out of argv
        if self.cache_from:
            cmd += ["--cache-from", f"type=registry,ref={self.cache_ref}"]
        if self.cache_to:
            cmd += [
                "--cache-to",
                f"type=registry,ref={self.cache_ref},mode=max,oci-mediatypes=true,image-manifest=true",
            ]
        cmd += [f"--provenance={self.provenance or 'false'}", "--tag", self.tag]
        for tag in self.extra_tags:
            cmd += ["--tag", tag]
        cmd += ["--metadata-file", str(self.metadata_file)]
        if self.push:
            cmd += ["--push"]
        cmd.append(str(self.context))
        return cmd


# "#12 [runtime 3/6] COPY --from=install /install /opt/venv" and "#12 CACHED"
_STEP_RE = re.compile(r"^#(\d+) \[(?:(?P<stage>[\w.-]+) )?(?P<n>\d+)/(?P<total>\d+)\] (?P<what>.+)$")
_CACHED_RE = re.compile(r"^#(\d+) CACHED$")
_DONE_RE = re.compile(r"^#(\d+) DONE ")
# the image's export (and, with --push, its push) is one vertex: "#15 exporting to image" … "#15 DONE 1.2s",
# naming what it wrote on the way: "#15 exporting manifest sha256:…", "#15 exporting manifest list sha256:…"
_IMAGE_VERTEX_RE = re.compile(r"^#(\d+) exporting to (?:image|oci)")
_EXPORTED_RE = re.compile(r"^#(\d+) exporting manifest( list)? (sha256:[0-9a-f]{64})\b")
# what the export vertices print: "#15 exporting to image", "#15 pushing layers", "#16 exporting cache to registry"
_PHASES = (
    (re.compile(r"^#\d+ exporting cache"), "caching"),
    (re.compile(r"^#\d+ exporting to (?:image|oci)"), "exporting"),
    (re.compile(r"^#\d+ pushing (?:layers|manifest|\S+ with docker)"), "pushing"),
)


@dataclass
class BuildProgress:
    """Reads buildx ``--progress plain`` lines: which Dockerfile steps ran and which were cached."""

    steps: dict[str, str] = field(default_factory=dict)  # vertex id -> step text
    cached: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    current: str = ""
    phase: str = "building"  # then "exporting" (the image), "pushing", "caching" (--cache-to)
    image_vertex: str = ""  # the vertex that exports (and pushes) the image
    exported: str = ""  # the digest it wrote: the manifest list's when there is one, else the manifest's
    exported_list: bool = False
    exported_done: bool = False  # that vertex is DONE: with --push, the image is in the registry
    failed_after_push: str = ""  # what failed once the image was pushed (its cache export), if anything

    def feed(self, line: str) -> None:
        self._follow_export(line)
        if m := _STEP_RE.match(line):
            vertex = m.group(1)
            if vertex not in self.steps:
                self.steps[vertex] = m.group("what")
                self.current = m.group("what")
        elif line.startswith("#") and (phase := next((p for r, p in _PHASES if r.match(line)), None)):
            self.phase = phase
        elif m := _CACHED_RE.match(line):
            self.cached.add(m.group(1))
        elif m := _DONE_RE.match(line):
            self.done.add(m.group(1))

    def _follow_export(self, line: str) -> None:
        if m := _IMAGE_VERTEX_RE.match(line):
            self.image_vertex = m.group(1)
        elif self.image_vertex and (m := _EXPORTED_RE.match(line)) and m.group(1) == self.image_vertex:
            if m.group(2) or not self.exported_list:
                self.exported, self.exported_list = m.group(3), bool(m.group(2))
        elif self.image_vertex and (m := _DONE_RE.match(line)) and m.group(1) == self.image_vertex:
            self.exported_done = True

    @property
    def exported_digest(self) -> str:
        """The digest of the image once its export vertex is done ('' before, or when it named none)."""
        return self.exported if self.exported_done else ""

    @property
    def build_steps(self) -> dict[str, str]:
        """RUN/COPY/ADD steps: the ones that make layers (FROM and metadata-only steps aside)."""
        return {v: s for v, s in self.steps.items() if s.split(" ", 1)[0] in ("RUN", "COPY", "ADD")}

    @property
    def cache_hits(self) -> int:
        return sum(1 for v in self.build_steps if v in self.cached)


def read_metadata(path: Path) -> str:
    """The pushed image's digest from ``--metadata-file``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BuildError(f"{path}: buildx wrote no readable metadata ({exc})") from None
    digest = data.get("containerimage.digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise BuildError(f"{path}: no containerimage.digest in buildx metadata")
    return digest


def docker_login(runner: Runner, target: RegistryNamespace, creds: Credentials) -> None:
    """Log the docker CLI (and so buildx) in; the password goes by stdin, never argv."""
    runner.run(
        ["docker", "login", target.host, "--username", creds.username, "--password-stdin"],
        stdin=creds.password.reveal(),
    )
