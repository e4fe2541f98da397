"""No credential in argv, output, records, reports, the registry's ledger, image configs,
attestations, signatures or layers: the whole pipeline runs with one recognisable fake token as the
registry password, a build's BuildKit secret and GITHUB_TOKEN, and with a release signing key given
as a PEM in the environment with its password; everything is grepped for the token, the password
and the key.

Not searched: the test's own DOCKER_CONFIG, where `docker login` stores what it was given
(that is the docker CLI's credential store, outside shipyard's output), and the process
environments, which carry the token by design.
"""

from __future__ import annotations

import gzip
import json
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from shipyard.oci.credentials import Credentials, Secret
from shipyard.oci.signing import SigningKey
from shipyard.record import load_record
from tests.conftest import git, make_project
from tests.integration.conftest import htpasswd_registry, shipyard

PORT = 5004
USER = "releaser"
TOKEN = "shipyard-fake-token-" + secrets.token_hex(8)
KEY_PASSWORD = "shipyard-fake-key-password-" + secrets.token_hex(8)
SIGNING_KEY = SigningKey.generate()
KEY_PEM = SIGNING_KEY.pem(KEY_PASSWORD.encode())
KEY_BODY = KEY_PEM.splitlines()[2]  # a line of the encrypted key itself


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with htpasswd_registry(tmp_path_factory.mktemp("secret-registry"), PORT, USER, TOKEN) as host:
        yield f"{host}/team"


class ArgvWatch:
    """Reads every process's command line while the pipeline runs, looking for the token."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            self.samples += 1
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    argv = cmdline.read_bytes()
                except OSError:
                    continue
                if any(secret in argv for secret in SECRETS):
                    self.hits.append(argv.replace(b"\0", b" ").decode(errors="replace")[:200])

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


SECRETS = (TOKEN.encode(), KEY_PASSWORD.encode(), KEY_BODY)


def registry_texts(client: RegistryClient, record_path: Path) -> Iterator[tuple[str, bytes]]:
    """Manifests, configs, attestations, SBOMs, layers of the release, and the channel's ledger."""
    record = load_record(record_path)
    seen: set[str] = set()

    def walk(repository: str, reference: str) -> Iterator[tuple[str, bytes]]:
        manifest = client.manifest(repository, reference)
        if manifest is None or manifest.digest in seen:
            return
        seen.add(manifest.digest)
        yield f"{repository}@{manifest.digest}", manifest.raw
        doc = manifest.json
        for child in doc.get("manifests", []):
            yield from walk(repository, child["digest"])
        for blob in [doc.get("config", {}), *doc.get("layers", [])]:
            if blob.get("digest") and blob["digest"] not in seen:
                seen.add(blob["digest"])
                data = client.blob(repository, blob["digest"])
                yield f"{repository}@{blob['digest']}", gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data

    for unit in record.units.values():
        repository = unit.repository.split("/", 1)[1]
        yield from walk(repository, unit.digest)
        for suffix in ("", ".sig", ".att"):  # the referrers (SBOM), the signature, the signed verdicts
            yield from walk(repository, "sha256-" + unit.digest.removeprefix("sha256:") + suffix)
    yield from walk("team/shipyard-ledger", "stable")


def test_the_fake_token_appears_nowhere(token_registry: str, built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, base_record, _ = built
    root = make_project(tmp_path / "proj", services=("affective-processing-center",), profiles=("cpu",))
    catalog = root / "shipyard.toml"
    text = catalog.read_text()
    for family in ("family-web", "family-ml"):  # both use family.Dockerfile.j2
        text = text.replace(f"[images.{family}]\n", f'[images.{family}]\nbuild_secrets = ["HF_TOKEN"]\n', 1)
    catalog.write_text(text)
    template = root / "dockerfiles" / "family.Dockerfile.j2"
    template.write_text(
        template.read_text().replace(
            "COPY --from=install /install /opt/venv\n",
            "COPY --from=install /install /opt/venv\n"
            "RUN --mount=type=secret,id=HF_TOKEN,required=true test -s /run/secrets/HF_TOKEN\n",
        )
    )
    (root / "keys").mkdir(exist_ok=True)
    (root / "keys" / "team.pub").write_bytes(SIGNING_KEY.public.pem())
    catalog.write_text(
        catalog.read_text().replace('trusted_keys = ["keys/release.pub"]', 'trusted_keys = ["keys/team.pub"]')
    )
    git(root, "add", "keys")
    git(root, "commit", "-qam", "family-web needs a token at build time; the team's release key")
    env = {
        "SHIPYARD_REGISTRY": token_registry,
        "SHIPYARD_REGISTRY_USERNAME": USER,
        "SHIPYARD_REGISTRY_PASSWORD": TOKEN,
        "HF_TOKEN": TOKEN,
        "GITHUB_TOKEN": TOKEN,
        "SHIPYARD_SIGNING_KEY_PEM": KEY_PEM.decode(),
        "SHIPYARD_SIGNING_KEY_PASSWORD": KEY_PASSWORD,
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "SHIPYARD_BASE_OVERRIDE": f"python={base_record.units['cpu/base-python'].parent}",
    }
    project = ("--project", str(root))
    printed: list[str] = []
    with ArgvWatch() as watch:
        for args in (
            ("build", "-vv"),
            ("verify", "-v"),
            ("scan", "--skip-vulnerabilities", "-v"),
            ("canary", "--profile", "cpu", "-v"),
            ("promote", "--channel", "stable", "-v"),
            ("history", "--channel", "stable", "--json"),
        ):
            result = shipyard(*project, *args, env=env)
            printed.append(result.stdout + result.stderr)
        refused = shipyard(*project, "verify", env={**env, "SHIPYARD_REGISTRY_USERNAME": "someone-else"}, check=False)
        assert refused.returncode == 5, refused.stderr
        printed.append(refused.stdout + refused.stderr)
        missing = shipyard(*project, "build", "--no-reuse", env={**env, "HF_TOKEN": ""}, check=False)
        assert missing.returncode == 2 and "build_secrets: HF_TOKEN is not set" in missing.stderr, missing.stderr
        printed.append(missing.stdout + missing.stderr)
    assert "--secret id=HF_TOKEN,env=HF_TOKEN" in printed[0] and "--password-stdin" in printed[0]

    places: dict[str, bytes] = {f"output of command {i}": text.encode() for i, text in enumerate(printed)}
    places |= {str(p): p.read_bytes() for p in (root / ".shipyard").rglob("*") if p.is_file()}
    record_path = next((root / ".shipyard" / "releases").glob("*.json"))
    with RegistryClient(parse_registry(token_registry), Credentials(USER, Secret(TOKEN))) as client:
        places |= dict(registry_texts(client, record_path))
    hits = [name for name, data in places.items() if any(secret in data for secret in SECRETS)] + watch.hits
    print(
        f"\nsecrets grep: {len(places)} outputs/files/blobs and {watch.samples} argv samples searched, {len(hits)} hits"
    )
    assert hits == []
    assert len(places) > 40 and watch.samples > 50  # the search really covered the run
    assert json.loads(printed[5])["entries"][-1]["state"] == "complete"
    assert any(b"dev.cosignproject.cosign/signature" in data for data in places.values()), "nothing was signed"
