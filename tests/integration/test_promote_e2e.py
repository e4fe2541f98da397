"""promote / rollback / history against the real registry, checked through the API and with skopeo;
and the whole flow against an htpasswd-protected registry."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.oci.client import RegistryClient
from shipyard.record import load_record
from tests.conftest import git
from tests.integration.conftest import htpasswd_registry, shipyard

CHANNEL = "stable-it"


def skopeo_digest(ref: str, *creds: str) -> str:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--raw", *creds, f"docker://{ref}"], capture_output=True, check=True
    )
    return "sha256:" + hashlib.sha256(out.stdout).hexdigest()


def test_promote_sets_channel_digests_equal_to_the_record(gated, registry: RegistryClient) -> None:  # type: ignore[no-untyped-def]
    root, record = gated
    shipyard("--project", str(root), "promote", record.release, "--channel", CHANNEL)
    for key, unit in record.units.items():
        assert registry.resolve(f"shipyard-it/{key}", CHANNEL) == unit.digest, key
    unit = record.units["cpu/model-ops-coordinator"]
    assert skopeo_digest(f"{unit.repository}:{CHANNEL}") == unit.digest
    again = shipyard("--project", str(root), "promote", record.release, "--channel", CHANNEL)
    assert "nothing changed" in again.stdout
    history = json.loads(shipyard("history", "--channel", CHANNEL, "--json").stdout)
    assert history["entries"][-1]["release"] == record.release and history["entries"][-1]["state"] == "complete"


def test_an_edited_record_is_refused_from_the_registry_and_nothing_moves(gated, registry: RegistryClient) -> None:  # type: ignore[no-untyped-def]
    """The record's verdicts say nothing any more: a record pointing a unit at a digest that carries no
    trusted signature is refused, even with every verdict in the file claiming it passed."""
    root, record = gated
    edited = record.release + "-edited"
    data = json.loads((root / ".shipyard" / "releases" / f"{record.release}.json").read_text())
    data["release"] = edited
    unit = data["units"]["cpu/affective-processing-center"]
    unit["digest"] = data["units"]["cpu/model-ops-coordinator"]["digest"]  # signed, but in another repository
    (root / ".shipyard" / "releases" / f"{edited}.json").write_text(json.dumps(data))
    result = shipyard("--project", str(root), "promote", edited, "--channel", "refused-it", check=False)
    assert result.returncode == 13, result.stderr
    assert f"cpu/affective-processing-center: {unit['digest'][:19]} has no signature by a trusted key" in result.stderr
    assert "no signed verify verdict" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert all(registry.resolve(f"shipyard-it/{key}", "refused-it") is None for key in record.units)


def test_rollback_restores_the_previous_release(gated, registry: RegistryClient) -> None:  # type: ignore[no-untyped-def]
    root, first = gated
    shipyard("--project", str(root), "promote", first.release, "--channel", CHANNEL)
    # a second release: one service changed, committed
    app = root / "services" / "affective-processing-center" / "affective_processing_center" / "__init__.py"
    app.write_text(app.read_text() + "\n# second release\n")
    git(root, "commit", "-qam", "second", date="2025-01-12T12:00:00+00:00")
    shipyard("--project", str(root), "build", "--profile", "cpu", env={"SHIPYARD_BASE_OVERRIDE": "local"})
    second = load_record(root / ".shipyard" / "releases" / f"20250112-{git(root, 'rev-parse', 'HEAD')[:8]}.json")
    changed = "cpu/affective-processing-center"
    assert second.units[changed].digest != first.units[changed].digest
    shipyard(
        "--project",
        str(root),
        "promote",
        second.release,
        "--channel",
        CHANNEL,
        "--force",
        "--reason",
        "integration test of rollback",
    )
    assert registry.resolve(f"shipyard-it/{changed}", CHANNEL) == second.units[changed].digest
    result = shipyard("rollback", "--channel", CHANNEL)
    assert f"{CHANNEL} is back on {first.release}" in result.stdout
    for key, unit in first.units.items():
        assert registry.resolve(f"shipyard-it/{key}", CHANNEL) == unit.digest, key
    table = shipyard("history", "--channel", CHANNEL).stdout
    assert "FORCED: integration test of rollback" in table and "rollback" in table


# --- an htpasswd-protected registry, end to end --------------------------------------------------

AUTH_PORT = 5001
USER, PASSWORD = "releaser", "Pa55-not-in-logs-7f3a"


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with htpasswd_registry(tmp_path_factory.mktemp("auth-registry"), AUTH_PORT, USER, PASSWORD) as host:
        yield f"{host}/team"


def test_htpasswd_registry_end_to_end(auth_registry: str, built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, record, _ = built
    base = record.units["cpu/base-python"].parent  # the local base, in the anonymous registry
    env = {
        "SHIPYARD_REGISTRY": auth_registry,
        "SHIPYARD_REGISTRY_USERNAME": USER,
        "SHIPYARD_REGISTRY_PASSWORD": PASSWORD,
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "SHIPYARD_BASE_OVERRIDE": f"python={base}",
    }
    outputs = []
    build = shipyard("--project", str(root), "build", "--profile", "cpu", "--image", "family-web", "-v", env=env)
    outputs.append(build.stdout + build.stderr)
    assert "--password-stdin" in build.stdout
    verify = shipyard("--project", str(root), "verify", env=env)
    outputs.append(verify.stdout + verify.stderr)
    promote = shipyard(
        "--project", str(root), "promote", "--channel", "stable", "--force", "--reason", "auth test", env=env
    )
    outputs.append(promote.stdout + promote.stderr)
    history = shipyard("history", "--channel", "stable", env=env)
    assert "auth test" in history.stdout
    # the API answers only with the credentials
    anonymous = httpx.get(f"http://127.0.0.1:{AUTH_PORT}/v2/team/cpu/family-web/manifests/stable")
    assert anonymous.status_code == 401
    wrong = shipyard("--project", str(root), "verify", env={**env, "SHIPYARD_REGISTRY_PASSWORD": "wrong"}, check=False)
    assert wrong.returncode == 5, wrong.stderr
    assert wrong.stderr.startswith("shipyard: error: registry localhost:5001 refused the credentials (HTTP 401)")
    outputs.append(wrong.stdout + wrong.stderr)
    assert not any(PASSWORD in text for text in outputs), "the password was printed"
    for path in (root / ".shipyard").rglob("*.json"):
        assert PASSWORD not in path.read_text(), path
    assert (tmp_path / "docker" / "config.json").is_file()  # docker login went to the test's own config
