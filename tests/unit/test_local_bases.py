"""LocalBases.ensure for one platform (as it has always been) and for several (one index per set)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from shipyard.build import base
from shipyard.build.base import LOCAL_BASES, LocalBases
from shipyard.errors import ConfigError, EngineError
from shipyard.events import Event
from shipyard.oci.client import RegistryClient
from shipyard.runner import Completed, Runner
from tests.memregistry import MemoryRegistry

NAME = "debian-bookworm-python"
TAG = LOCAL_BASES[NAME].tag
REPO = f"acme/bases/{NAME}"
REF = f"localhost:5000/{REPO}"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
SOURCES = ["deb http://mirror.test/debian bookworm main"]


def image_manifest(platform: str) -> bytes:
    arch = platform.split("/")[1]
    return json.dumps(
        {"mediaType": MANIFEST, "config": {"digest": "sha256:" + arch.rjust(64, "0")}, "layers": []}
    ).encode()


class FakeEngine(Runner):
    """docker push and imagetools create as the registry sees them: pushes land in ``mem``."""

    def __init__(self, mem: MemoryRegistry, *, emulation: bool = True, dry_run: bool = False) -> None:
        super().__init__(dry_run=dry_run)
        self.mem = mem
        self.emulation = emulation
        self.imported: dict[str, str] = {}  # ref -> platform of its image

    def run(self, argv: Sequence[str], **kwargs: Any) -> Completed:
        argv = [str(a) for a in argv]
        self.history.append(argv)
        if self.dry_run:
            return Completed(argv, 0, "")
        if argv[0] == "arch-test":
            return Completed(argv, 0 if self.emulation else 1, "")
        if argv[:2] == ["docker", "import"]:
            platform = argv[argv.index("--platform") + 1] if "--platform" in argv else "linux/amd64"
            self.imported[argv[-1]] = platform
        elif argv[:2] == ["docker", "push"]:
            ref = argv[-1]
            self.mem.put(REPO, ref.rsplit(":", 1)[1], image_manifest(self.imported[ref]), MANIFEST)
        elif argv[:4] == ["docker", "buildx", "imagetools", "create"]:
            self._create_index(argv[5], argv[6:])
        return Completed(argv, 0, "")

    def _create_index(self, ref: str, members: list[str]) -> None:
        entries = []
        for member in members:
            digest = member.split("@", 1)[1]
            body, media_type = self.mem.manifests[(REPO, digest)]
            arch = next(a for a in ("amd64", "arm64") if body == image_manifest(f"linux/{a}"))
            entries.append(
                {"mediaType": media_type, "digest": digest, "platform": {"os": "linux", "architecture": arch}}
            )
        self.mem.put(
            REPO, ref.rsplit(":", 1)[1], json.dumps({"mediaType": INDEX, "manifests": entries}).encode(), INDEX
        )


@pytest.fixture
def x86_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    monkeypatch.setattr(base, "host_debian_sources", lambda suite: SOURCES)


def bases(
    mem: MemoryRegistry, registry: RegistryClient, tmp_path: Path, **engine: bool
) -> tuple[LocalBases, list[Event]]:
    events: list[Event] = []
    local = LocalBases(registry.target, registry, FakeEngine(mem, **engine), tmp_path, events.append)
    return local, events


def commands(local: LocalBases) -> list[list[str]]:
    return local.runner.history


def test_the_default_is_built_as_it_always_was(
    x86_host: None, mem: MemoryRegistry, registry: RegistryClient, tmp_path: Path
) -> None:
    local, events = bases(mem, registry, tmp_path)
    ref = local.ensure(NAME)
    rootfs = str(tmp_path / "bases" / f"{NAME}-{TAG}.tar")
    assert commands(local) == [
        ["mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(LOCAL_BASES[NAME].packages)]
        + ["--format=tar", "bookworm", rootfs, *SOURCES],
        ["docker", "import", "--change", 'CMD ["python3"]', rootfs, f"{REF}:{TAG}"],
        ["docker", "push", "--quiet", f"{REF}:{TAG}"],
    ]
    assert ref == f"{REF}@{mem.tags[(REPO, TAG)]}"
    assert [(e.kind, e.message.split(" (")[0], e.data) for e in events] == [
        ("base.building", f"building local base {NAME} with mmdebstrap", {}),
        ("base.ready", f"local base {NAME} pushed", {"digest": mem.tags[(REPO, TAG)]}),
    ]
    assert local.ensure(NAME, platforms=["linux/amd64"]) == ref and len(commands(local)) == 3  # present: as is


def test_two_platforms_make_one_index_over_an_image_each(
    x86_host: None, mem: MemoryRegistry, registry: RegistryClient, tmp_path: Path
) -> None:
    amd64 = mem.put(REPO, TAG, image_manifest("linux/amd64"), MANIFEST)  # the single-platform base, already there
    local, _ = bases(mem, registry, tmp_path)
    ref = local.ensure(NAME, platforms=("linux/amd64", "linux/arm64"))
    rootfs = str(tmp_path / "bases" / f"{NAME}-{TAG}-arm64.tar")
    arm64 = mem.tags[(REPO, f"{TAG}-arm64")]
    assert commands(local) == [
        ["arch-test", "arm64"],
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            "--arch=arm64",
            "--include=" + ",".join(LOCAL_BASES[NAME].packages),
        ]
        + ["--format=tar", "bookworm", rootfs, *SOURCES],
        ["docker", "import", "--platform", "linux/arm64", "--change", 'CMD ["python3"]', rootfs, f"{REF}:{TAG}-arm64"],
        ["docker", "push", "--quiet", f"{REF}:{TAG}-arm64"],
        [
            "docker",
            "buildx",
            "imagetools",
            "create",
            "--tag",
            f"{REF}:{TAG}-amd64-arm64",
            f"{REF}@{amd64}",
            f"{REF}@{arm64}",
        ],
    ]
    index = mem.tags[(REPO, f"{TAG}-amd64-arm64")]
    assert ref == f"{REF}@{index}"
    mem.requests.clear()
    assert local.ensure(NAME, platforms=["linux/arm64", "linux/amd64"]) == ref  # the set, not its order
    assert len(commands(local)) == 5 and mem.requests == [("GET", f"/v2/{REPO}/manifests/{TAG}-amd64-arm64")]


def test_a_present_member_is_not_rebuilt_and_rebuild_rebuilds_all(
    x86_host: None, mem: MemoryRegistry, registry: RegistryClient, tmp_path: Path
) -> None:
    mem.put(REPO, f"{TAG}-arm64", image_manifest("linux/arm64"), MANIFEST)
    local, _ = bases(mem, registry, tmp_path)
    local.ensure(NAME, platforms=("linux/amd64", "linux/arm64"))
    assert [argv[:2] for argv in commands(local)] == [["mmdebstrap", "--quiet"], ["docker", "import"]] + [
        ["docker", "push"],
        ["docker", "buildx"],
    ]
    local.runner.history.clear()
    local.ensure(NAME, platforms=("linux/amd64", "linux/arm64"), rebuild=True)
    assert sum(argv[0] == "mmdebstrap" for argv in commands(local)) == 2 and commands(local)[-1][2] == "imagetools"


def test_a_foreign_platform_alone_is_its_own_image(
    x86_host: None, mem: MemoryRegistry, registry: RegistryClient, tmp_path: Path
) -> None:
    local, _ = bases(mem, registry, tmp_path)
    assert local.ensure(NAME, platforms=["linux/arm64"]) == f"{REF}@{mem.tags[(REPO, f'{TAG}-arm64')]}"
    assert not any("imagetools" in argv for argv in commands(local)) and (REPO, TAG) not in mem.tags


def test_no_emulation_is_one_line_naming_up(
    x86_host: None, mem: MemoryRegistry, registry: RegistryClient, tmp_path: Path
) -> None:
    local, _ = bases(mem, registry, tmp_path, emulation=False)
    with pytest.raises(EngineError, match=r"cannot run arm64 programs.*scripts/up\.sh") as caught:
        local.ensure(NAME, platforms=("linux/amd64", "linux/arm64"))
    assert "\n" not in str(caught.value)
    assert commands(local) == [["arch-test", "arm64"]]  # checked before the amd64 image is built


def test_an_index_tag_listing_another_set_is_refused(
    x86_host: None, mem: MemoryRegistry, registry: RegistryClient, tmp_path: Path
) -> None:
    entry = {
        "mediaType": MANIFEST,
        "digest": "sha256:" + "a" * 64,
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    mem.put(REPO, f"{TAG}-amd64-arm64", json.dumps({"mediaType": INDEX, "manifests": [entry]}).encode(), INDEX)
    local, _ = bases(mem, registry, tmp_path)
    with pytest.raises(EngineError, match="lists linux/amd64, not linux/amd64, linux/arm64"):
        local.ensure(NAME, platforms=("linux/amd64", "linux/arm64"))


def test_a_dry_run_plans_the_index_by_tag(
    x86_host: None, mem: MemoryRegistry, registry: RegistryClient, tmp_path: Path
) -> None:
    local, _ = bases(mem, registry, tmp_path, dry_run=True)
    ref = local.ensure(NAME, platforms=("linux/amd64", "linux/arm64"))
    assert ref == f"{REF}:{TAG}-amd64-arm64"
    assert commands(local)[-1][-2:] == [f"{REF}:{TAG}", f"{REF}:{TAG}-arm64"]


@pytest.mark.parametrize("platforms", [(), ("linux/amd64", "linux/s390x")])
def test_platforms_without_a_local_base_are_config_errors(
    x86_host: None, mem: MemoryRegistry, registry: RegistryClient, tmp_path: Path, platforms: tuple[str, ...]
) -> None:
    local, _ = bases(mem, registry, tmp_path)
    with pytest.raises(ConfigError):
        local.ensure(NAME, platforms=platforms)
