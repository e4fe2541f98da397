"""Deploys that carry their models, on the real engine, from the real registry.

The session's gated release runs ``affective-processing-center`` on a target of its own. The test makes
releases that differ only in the service's model (its own files, then the same with one more file), each
signed and verified as a build and verify would. What runs, and what it mounts, is read with the docker
CLI; what was fetched is read from the fill's own report and the deployment ledger in the registry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from shipyard.config.keys import development_key, machine_state_dir
from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from shipyard.oci.cosign import push_signature
from shipyard.oci.modelpack import LocalModel, push_model
from shipyard.record import ModelFileRecord, ModelRecord, ReleaseRecord, save_record
from shipyard.release.deploy.deployments import load_deployments
from shipyard.release.model_volumes import volume_name
from tests.conftest import REPO
from tests.integration.conftest import IT_REGISTRY, copy_project, shipyard, sign_as_gated

SERVICE = "affective-processing-center"
KEY = f"cpu/{SERVICE}"
RUN = uuid.uuid4().hex[:6]
TARGET = f"mdl-{RUN}"
PORT = 36560
GIB = 1 << 30


@dataclass
class Project:
    root: Path
    base: ReleaseRecord
    model: str  # the name of the service's model
    files: Path  # its files, as the repo has them


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def project(gated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:  # type: ignore[no-untyped-def]
    source, base = gated
    root = copy_project(source, tmp_path_factory.mktemp("deploy-models") / "proj")
    with (root / "shipyard.toml").open("a") as out:
        out.write(f'\n[targets.{TARGET}]\nprofile = "cpu"\nengine = "unix:///var/run/docker.sock"\n')
        out.write(f'services = ["{SERVICE}"]\ndrain_s = 2\n[targets.{TARGET}.ports]\n"{SERVICE}" = {PORT}\n')
    name = next(iter(base.units[KEY].models), "affect-nb")
    files = REPO / "models" / name
    if not files.is_dir():  # a catalog whose service has no model yet: one of a few files of its own
        files = tmp_path_factory.mktemp("model") / name
        files.mkdir()
        (files / "config.json").write_text('{"labels": ["joy", "anger"]}')
    try:
        yield Project(root, base, name, files)
    finally:
        for container in _docker("ps", "-aq", "--filter", f"label=io.shipyard.target={TARGET}").split():
            _docker("rm", "-f", container)
        for line in _docker("volume", "ls", "-q").split():
            if line.startswith("shipyard-model-") or TARGET in line:
                subprocess.run(["docker", "volume", "rm", line], capture_output=True)  # in use elsewhere: stays


def release_with(project: Project, files: Path, tag: str) -> ReleaseRecord:
    """The gated release with the service's model replaced by ``files``: pushed and signed, and the
    release's verdicts signed (as build, verify, scan and canary do)."""
    record = replace(project.base, release=f"{project.base.release}-{tag}")
    path = parse_registry(IT_REGISTRY).repository("models", project.model)
    with RegistryClient(parse_registry(IT_REGISTRY)) as registry:
        pushed = push_model(
            registry, path, LocalModel.scan(files, name=project.model, format="json"), tag=record.release
        )
        signer = development_key(machine_state_dir())
        push_signature(registry, path, pushed.digest, f"localhost:5000/{path}", signer)
        model = ModelRecord(
            repository=f"localhost:5000/{path}", tag=record.release, digest=pushed.digest, format="json",
            files=[ModelFileRecord(f.path, f.digest, f.size) for f in pushed.files],
            size=sum(f.size for f in pushed.files), source="path", origin=str(files),
            verdicts={"verify": {"passed": True, "problems": []}},
        )  # fmt: skip
        record.models = {**project.base.models, project.model: model}
        record.units = {
            **project.base.units,
            KEY: replace(project.base.units[KEY], models={project.model: pushed.digest}),
        }
    save_record(project.root, record)
    sign_as_gated(record)  # the release's own verdicts, its model's included
    return record


def deploy(project: Project, record: ReleaseRecord, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return shipyard("--project", str(project.root), "deploy", "--target", TARGET, record.release,
                    check=check)  # fmt: skip


def mounts() -> list[tuple[str, str, bool]]:
    """(volume, destination, writable) of every volume the target's service container mounts, as docker says."""
    ids = _docker("ps", "-q", "--filter", f"label=io.shipyard.target={TARGET}", "--filter", "label=io.shipyard.service")
    found = []
    for container in ids.split():
        for mount in json.loads(_docker("inspect", "--format", "{{json .Mounts}}", container)):
            if mount["Type"] == "volume":
                found.append((mount["Name"], mount["Destination"], bool(mount["RW"])))
    return sorted(found)


def with_extra(project: Project, tmp: Path, name: str, data: bytes | int) -> Path:
    """The model's files plus one more: ``data`` bytes, or a sparse file of that many bytes; and a note of
    this run, so that no earlier run (nor the session's canary) left its volume on the engine."""
    copy = tmp / f"{project.model}-{name}"
    shutil.copytree(project.files, copy)
    (copy / "RUN.txt").write_text(f"{RUN} {name}\n")
    if isinstance(data, int):
        with (copy / name).open("wb") as out:
            out.truncate(data)
    else:
        (copy / name).write_bytes(data)
    return copy


def test_each_release_runs_its_own_model_and_a_rollback_puts_the_old_one_back_with_no_download(
    project: Project, tmp_path: Path
) -> None:
    a = release_with(project, with_extra(project, tmp_path, "NOTICE", b"first model\n"), "m1")
    b = release_with(project, with_extra(project, tmp_path, "LICENSE", b"second model\n"), "m2")
    m1, m2 = (r.models[project.model] for r in (a, b))
    assert m1.digest != m2.digest
    mount = f"/models/{project.model}"

    first = deploy(project, a)
    assert f"model {project.model} {m1.digest[:19]} filled volume" in first.stdout, first.stdout
    assert mounts() == [(volume_name(project.model, m1.digest), mount, False)]

    deploy(project, b)
    assert mounts() == [(volume_name(project.model, m2.digest), mount, False)]
    back = deploy(project, a)
    assert "nothing downloaded" in back.stdout and "filled volume" not in back.stdout, back.stdout
    assert mounts() == [(volume_name(project.model, m1.digest), mount, False)]
    volumes = _docker("volume", "ls", "-q", "--filter", "label=io.shipyard.model").split()
    assert {volume_name(project.model, m.digest) for m in (m1, m2)} <= set(volumes)  # side by side

    with RegistryClient(parse_registry(IT_REGISTRY)) as registry:
        entries = load_deployments(registry, "shipyard-it", TARGET).entries
    assert [(e.release, e.state, e.models) for e in entries[-3:]] == [
        (r.release, "complete", {project.model: r.models[project.model].ref}) for r in (a, b, a)
    ]
    steps = [s["step"] for s in entries[0].steps]
    assert "models" in steps and steps.index("models") < steps.index("switch"), steps


def test_a_model_changed_in_the_registry_fails_verify_naming_the_file_and_the_deploy_starts_nothing(
    project: Project, tmp_path: Path
) -> None:
    good = release_with(project, project.files, "good")
    deploy(project, good)
    running = _docker("ps", "-q", "--filter", f"label=io.shipyard.target={TARGET}").split()
    bad = release_with(project, with_extra(project, tmp_path, "weights.bin", os.urandom(1 << 16)), "bad")
    layer = next(f for f in bad.models[project.model].files if f.path == "weights.bin")
    hexdigest = layer.digest.removeprefix("sha256:")
    blob = machine_state_dir() / "registry" / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
    blob.write_bytes(bytes(layer.size))  # replaced in the registry's storage: same size, same digest named

    verify = shipyard("--project", str(project.root), "verify", bad.release, check=False)
    assert verify.returncode != 0
    assert f"models/{project.model}" in verify.stdout + verify.stderr
    assert "weights.bin" in verify.stdout + verify.stderr

    refused = deploy(project, bad, check=False)
    assert refused.returncode != 0
    assert "weights.bin" in refused.stderr and "nothing was changed" in refused.stderr, refused.stderr
    assert _docker("ps", "-q", "--filter", f"label=io.shipyard.target={TARGET}").split() == running


def test_a_1_gib_model_is_pushed_and_deployed_in_under_200_mb(project: Project, tmp_path: Path) -> None:
    big = with_extra(project, tmp_path, "weights-1g.bin", GIB)
    script = (
        "import resource, subprocess, sys\n"
        "subprocess.run(sys.argv[1:], check=True)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    push = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from tests.integration.test_deploy_models import Project, release_with\n"
        "from shipyard.record import load_record\n"
        "base = load_record(Path(sys.argv[1]))\n"
        "release_with(Project(Path(sys.argv[2]), base, sys.argv[3], Path(sys.argv[4])), Path(sys.argv[4]), 'big')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    base_path = tmp_path / "base.json"
    base_path.write_text(project.base.to_json())
    pushed = subprocess.run(
        [sys.executable, "-c", push, str(base_path), str(project.root), project.model, str(big)],
        check=True, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    push_kib = int(pushed.stdout.split()[-1])
    argv = [sys.executable, "-m", "shipyard", "--project", str(project.root), "deploy", "--target", TARGET,
            f"{project.base.release}-big"]  # fmt: skip
    deployed = subprocess.run([sys.executable, "-c", script, *argv], check=True, capture_output=True, text=True)
    deploy_kib = int(deployed.stdout.split()[-1])
    assert "weights-1g.bin" not in deployed.stderr
    filled = re.search(r"filled volume \S+: \d+ files, (\d+) bytes, every digest checked", deployed.stdout)
    assert filled is not None and int(filled[1]) > GIB, deployed.stdout[-2000:]
    print(f"1 GiB model: push peak RSS {push_kib / 1024:.0f} MB, deploy peak RSS {deploy_kib / 1024:.0f} MB")
    assert push_kib < 200 * 1024 and deploy_kib < 200 * 1024
