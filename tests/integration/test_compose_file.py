"""``shipyard compose-file`` checked by the real ``docker compose config``: digests, hardening, secrets."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from shipyard.record import ReleaseRecord
from tests.integration.conftest import shipyard

TARGET = '\n[targets.local]\nprofile = "cpu"\nengine = "unix:///var/run/docker.sock"\nsecrets = ["HF_TOKEN"]\n'


def compose_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    return subprocess.run(
        ["docker", "compose", "-f", str(path), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, env={**clean, **env},
    )  # fmt: skip


def test_the_release_and_the_channel_give_the_same_project_that_compose_accepts(gated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, record = gated
    assert isinstance(record, ReleaseRecord)
    catalog = root / "shipyard.toml"
    original = catalog.read_text()
    catalog.write_text(original + TARGET)
    try:
        from_release = tmp_path / "release.yaml"
        shipyard(
            "--project", str(root), "compose-file", "--target", "local", record.release, "--output", str(from_release)
        )
        channel = f"deploy-{uuid.uuid4().hex[:6]}"
        shipyard("--project", str(root), "promote", record.release, "--channel", channel, "--profile", "cpu")
        from_channel = shipyard(
            "--project", str(root), "compose-file", "--target", "local", "--channel", channel
        ).stdout
    finally:
        catalog.write_text(original)
    missing = compose_config(from_release, {})
    assert missing.returncode != 0 and "HF_TOKEN must be set" in missing.stderr, missing.stderr
    config = compose_config(from_release, {"HF_TOKEN": "not-a-real-token"})
    assert config.returncode == 0, config.stderr
    services = json.loads(config.stdout)["services"]
    expected = {u.image: u for u in record.units.values() if u.profile == "cpu" and u.kind == "service"}
    assert set(services) == set(expected) and expected
    for name, service in services.items():
        unit = expected[name]
        assert service["image"] == unit.ref, name  # by digest
        assert service["user"] == "10001:10001" and service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert service["security_opt"] == ["no-new-privileges:true"]
        assert [p["target"] for p in service["ports"]] == [unit.expect["service"]["port"]]
        assert service["labels"]["io.shipyard.target"] == "local"
    assert "not-a-real-token" not in from_release.read_text()  # only the reference is written
    channel_file = tmp_path / "channel.yaml"
    channel_file.write_text(from_channel)
    via_channel = json.loads(compose_config(channel_file, {"HF_TOKEN": "x"}).stdout)["services"]
    assert {n: s["image"] for n, s in via_channel.items()} == {n: s["image"] for n, s in services.items()}


def test_a_gpu_profile_reserves_nvidia_devices_and_compose_keeps_them(gated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, record = gated
    catalog = root / "shipyard.toml"
    original = catalog.read_text()
    catalog.write_text(original + '\n[targets.gpu]\nprofile = "pc2"\nengine = "ssh://ops@pc2"\n')
    channel = f"gpu-{uuid.uuid4().hex[:6]}"
    try:  # pc2's units have no gate verdicts (only cpu's canary ran): promoted with the recorded override
        shipyard("--project", str(root), "promote", record.release, "--channel", channel, "--profile", "pc2",
                 "--force", "--reason", "compose-file test of a GPU profile")  # fmt: skip
        text = shipyard("--project", str(root), "compose-file", "--target", "gpu", "--channel", channel).stdout
    finally:
        catalog.write_text(original)
    path = tmp_path / "gpu.yaml"
    path.write_text(text)
    config = compose_config(path, {})
    assert config.returncode == 0, config.stderr
    services = json.loads(config.stdout)["services"]
    assert services
    for name, service in services.items():
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"], name
        assert service["image"].startswith(record.units[f"pc2/{name}"].repository + "@sha256:")
