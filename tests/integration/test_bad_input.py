"""A catalog of bad inputs: each one the real ``shipyard`` CLI in a subprocess, as a release engineer
meets it.

Every case must end with exactly one ``shipyard: error: …`` line on stderr that names the file, key or
flag and says what was expected, an exit code from the documented set (docs/reference/exit-codes.md), and
nothing built, pushed or promoted: no release record written, no repository under the case's own
registry namespace, and for promote/rollback no channel tag and no ledger. Every case fails before
anything is built, so the whole table runs in seconds.

The engine cases are real: a Docker host that does not exist; buildx hidden by a private mount
namespace (``unshare -m`` + a tmpfs over the system's cli-plugins directory, so the docker CLI really
has no buildx); a second, throw-away dockerd with the classic image store. The refused credentials
come from a real htpasswd registry.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import tenacity

from tests.conftest import git, make_project
from tests.integration.conftest import htpasswd_registry

EXIT_CODES = {2, 3, 4, 5, 6, 7, 10, 11, 12, 13}  # docs/reference/exit-codes.md
RUN = secrets.token_hex(3)  # a fresh namespace per run: leftovers of an earlier run cannot hide a push
MAIN_REGISTRY = "localhost:5000"
AUTH_PORT = 5003  # 5001/5002 belong to other integration tests that may run at the same time
AUTH_USER, AUTH_PASSWORD = "releaser", "right-Pa55-4b1e"
CHANNEL = "stable"
RELEASE = "20250111-0badc0de"  # a fabricated release record's tag
SERVICE = "affective-processing-center"
SYSTEM_PLUGIN_DIRS = (  # where the docker CLI looks for plugins besides $DOCKER_CONFIG/cli-plugins
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)

Mutation = Callable[[Path, str], None]  # (project root, the case's registry)


# --- mutations of a fresh project ------------------------------------------------------------------


def edit(rel: str, old: str, new: str, *, count: int = 1) -> Mutation:
    """Replace ``old`` in one file of the project; a mutation that does not apply fails the test."""

    def apply(root: Path, registry: str) -> None:
        path = root / rel
        text = path.read_text()
        assert old in text, f"{rel}: {old!r} not found, the case no longer applies"
        path.write_text(text.replace(old, new, count))

    return apply


def write(rel: str, text: str) -> Mutation:
    def apply(root: Path, registry: str) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)

    return apply


def record(*, verdicts: bool, digest: str = "sha256:" + "0b" * 32) -> Mutation:
    """A release record as `shipyard build` writes it (release/record.py), one unit, in the case's registry."""

    def apply(root: Path, registry: str) -> None:
        passed = {"passed": True}
        unit = {
            "profile": "cpu",
            "image": SERVICE,
            "kind": "service",
            "platform": "linux/amd64",
            "repository": f"{registry}/cpu/{SERVICE}",
            "tag": RELEASE,
            "digest": digest,
            "size": 1234,
            "parent": f"{registry}/cpu/family-web@sha256:" + "0a" * 32,
            "duration_s": 1.0,
            "steps": 3,
            "cache_hits": 0,
            "verdicts": {"verify": passed, "scan": passed, "canary": passed} if verdicts else {},
        }
        data = {
            "release": RELEASE,
            "revision": git(root, "rev-parse", "HEAD"),
            "created": "2025-01-11T12:00:00Z",
            "registry": registry,
            "units": {f"cpu/{SERVICE}": unit},
            "schema": 1,
        }
        path = root / ".shipyard" / "releases" / f"{RELEASE}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2))

    return apply


def no_commits(root: Path, registry: str) -> None:
    git(root, "init", "-q", "-b", "main")


# --- the table ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # after `shipyard --project ROOT`; "{registry}" is the case's own registry
    code: int
    says: tuple[str, ...]  # substrings of the one error line: the file/key/flag and what was expected
    mutate: tuple[Mutation, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # "{registry}" substituted here too
    commit: bool = True  # commit the mutation (else the dirty-tree check would answer first)
    initial_commit: bool = True  # False: make_project(commit=False), a directory that is no git repository
    needs: str = ""  # a fixture: "classic_engine", "auth_registry" or "no_buildx"
    promotes: bool = False  # also check that no channel tag and no ledger appeared


BUILD = ("build", "--registry", "{registry}")
PROFILE = "profiles/cpu.json"
CATALOG = "shipyard.toml"

CASES = [
    # --- profiles and catalog: syntax, keys, types ------------------------------------------------
    Case(
        "profile-invalid-json",
        BUILD,
        2,
        ("profiles/cpu.json:5:3: invalid JSON: Expecting ',' delimiter",),
        (edit(PROFILE, '"python_version": "3.11",', '"python_version": "3.11"'),),
    ),
    Case(
        "catalog-invalid-toml",
        BUILD,
        2,
        ("shipyard.toml: invalid TOML:", "(at line 14, column 15)"),
        (edit(CATALOG, 'kind = "family"', 'kind = "family'),),
    ),
    Case(
        "profile-unknown-key",
        BUILD,
        2,
        ("profiles/cpu.json: platfrom: unknown key (did you mean 'platform'?)",),
        (edit(PROFILE, '"platform":', '"platfrom":'),),
    ),
    Case(
        "catalog-unknown-key",
        BUILD,
        2,
        ("shipyard.toml: images.family-web.parnet: unknown key (did you mean 'parent'?)",),
        (edit(CATALOG, 'parent = "base-python"', 'parnet = "base-python"'),),
    ),
    Case(
        "profile-wrong-type",
        BUILD,
        2,
        ("profiles/cpu.json: env.OMP_NUM_THREADS: expected a string, got 2",),
        (edit(PROFILE, '"OMP_NUM_THREADS": "2"', '"OMP_NUM_THREADS": 2'),),
    ),
    Case(
        "catalog-wrong-type",
        BUILD,
        2,
        (f'shipyard.toml: images.{SERVICE}.service.port: expected an integer, got "6560"',),
        (edit(CATALOG, "port = 6560", 'port = "6560"'),),
    ),
    Case(
        "profile-unsupported-platform",
        BUILD,
        2,
        ("profiles/cpu.json: platform: expected linux/amd64 or linux/arm64, got 'linux/s390x'",),
        (edit(PROFILE, "linux/amd64", "linux/s390x"),),
    ),
    Case(
        "profile-base-not-pinned",
        BUILD,
        2,
        ("profiles/mainpc.json: bases.python:", "is not pinned", "@sha256:<64 hex>"),
        (edit("profiles/mainpc.json", "@sha256:", "-unpinned@sha1:"),),
    ),
    Case(
        "profile-build-arg-secret",
        BUILD,
        2,
        ("profiles/cpu.json: build_args.HF_TOKEN: looks like a secret", "BuildKit secrets"),
        (edit(PROFILE, '"build_args": {', '"build_args": {"HF_TOKEN": "x", '),),
    ),
    Case(
        "catalog-missing",
        BUILD,
        2,
        ("--project", "no shipyard.toml there"),
        (lambda root, _: (root / CATALOG).unlink(),),
    ),
    # --- selection on the command line ------------------------------------------------------------
    Case("unknown-profile", (*BUILD, "--profile", "cpux"), 2, ("--profile: unknown profile 'cpux'", "'cpu'")),
    Case(
        "unknown-image",
        (*BUILD, "--image", "family-wbe"),
        2,
        ("--image: unknown image 'family-wbe' (did you mean 'family-web'?)",),
    ),
    Case(
        "base-override-malformed",
        (*BUILD, "--base-override", "python"),
        2,
        ("--base-override: expected 'local' or ROLE=REF", "got 'python'"),
    ),
    Case("jobs-not-positive", (*BUILD, "--jobs", "0"), 2, ("--jobs", "expected a positive whole number, got '0'")),
    # --- the image graph --------------------------------------------------------------------------
    Case(
        "parent-missing",
        BUILD,
        2,
        ("shipyard.toml: images.family-ml.parent: unknown image 'family-wbe' (did you mean 'family-web'?)",),
        (edit(CATALOG, 'parent = "family-web"', 'parent = "family-wbe"'),),
    ),
    Case(
        "parent-cycle",
        BUILD,
        2,
        ("shipyard.toml: images.base-python.parent:", "cycle", "base-python -> family-web -> base-python"),
        (edit(CATALOG, 'parent = "base:python"', 'parent = "family-web"'),),
    ),
    Case(
        "context-missing",
        BUILD,
        2,
        ("shipyard.toml: images.family-web.context: directory 'families/family-wbe' does not exist",),
        (edit(CATALOG, 'context = "families/family-web"', 'context = "families/family-wbe"'),),
    ),
    Case(
        "service-without-health",
        BUILD,
        2,
        (
            f"shipyard.toml: images.{SERVICE}.service.health: missing (required)",
            "expected an absolute path like /health",
        ),
        (edit(CATALOG, 'health = "/health"\n', ""),),
    ),
    Case(
        "invalid-port",
        BUILD,
        2,
        (f"shipyard.toml: images.{SERVICE}.service.port: expected a TCP port 1-65535, got 70000",),
        (edit(CATALOG, "port = 6560", "port = 70000"),),
    ),
    # --- templates --------------------------------------------------------------------------------
    Case(
        "template-undefined-variable",
        BUILD,
        2,
        ("dockerfiles/family.Dockerfile.j2:5: undefined variable", "'parent_ref' is undefined"),
        (edit("dockerfiles/family.Dockerfile.j2", "FROM {{ parent }}", "FROM {{ parent_ref }}"),),
    ),
    Case(
        "template-syntax-error",
        BUILD,
        2,
        ("dockerfiles/service.Dockerfile.j2:", "template syntax error"),
        (edit("dockerfiles/service.Dockerfile.j2", "{{", "{% if %}{{"),),
    ),
    # --- registry references and tags -------------------------------------------------------------
    Case(
        "registry-malformed",
        ("build", "--registry", "localhost:5000/Shipyard_Bad"),
        2,
        ("--registry: 'localhost:5000/Shipyard_Bad':", "lowercase"),
    ),
    Case(
        "registry-without-namespace",
        ("build", "--registry", "localhost:5000"),
        2,
        ("--registry: 'localhost:5000':", "host[:port]/namespace"),
    ),
    Case(
        "registry-env-malformed",
        ("build",),
        2,
        ("SHIPYARD_REGISTRY: 'localhost:5000/Bad':", "expected the namespace after the host to be lowercase"),
        env={"SHIPYARD_REGISTRY": "localhost:5000/Bad"},
    ),
    Case(
        "release-tag-not-oci",
        ("promote", "v1.0+build", "--channel", CHANNEL),
        2,
        ("RELEASE 'v1.0+build'", "not a valid OCI tag", "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"),
        (record(verdicts=True),),
        promotes=True,
    ),
    Case(
        "trivy-db-tag-not-oci",
        ("trivy-db", "push", "db", "--to", "{registry}/trivy-db:2+latest"),
        2,
        (
            "--to:",
            "tag '2+latest' is not a valid OCI tag; expected [A-Za-z0-9_]",
        ),
        (write("db/trivy.db", "not a db"), write("db/metadata.json", "{}")),
    ),
    # --- git state --------------------------------------------------------------------------------
    Case(
        "dirty-tree",
        BUILD,
        3,
        ("work tree has uncommitted changes (notes.txt)", "--allow-dirty"),
        (write("notes.txt", "wip\n"),),
        commit=False,
    ),
    Case("no-commits", BUILD, 3, ("no commits yet", "git commit"), (no_commits,), initial_commit=False),
    Case("not-a-repository", BUILD, 3, ("not a git repository", "git init"), initial_commit=False),
    # --- the engine -------------------------------------------------------------------------------
    Case(
        "engine-not-running",
        BUILD,
        4,
        ("Docker engine not reachable", "DOCKER_HOST=unix:///nonexistent.sock"),
        env={"DOCKER_HOST": "unix:///nonexistent.sock"},
    ),
    Case("buildx-missing", BUILD, 4, ("docker buildx is missing", "buildx plugin"), needs="no_buildx"),
    Case(
        "classic-image-store",
        BUILD,
        4,
        ("classic image store", "containerd-snapshotter", "/etc/docker/daemon.json"),
        needs="classic_engine",
    ),
    # --- registries and credentials ---------------------------------------------------------------
    Case(
        "credentials-refused",
        BUILD,
        5,
        ("registry localhost:5003 refused the credentials (HTTP 401)", "SHIPYARD_REGISTRY_USERNAME"),
        env={"SHIPYARD_REGISTRY_USERNAME": AUTH_USER, "SHIPYARD_REGISTRY_PASSWORD": "wrong-password"},
        needs="auth_registry",
    ),
    Case(
        "ghcr-without-token",
        ("build", "--registry", "ghcr.io/acme"),
        2,
        ("GITHUB_TOKEN is not set", "docker login ghcr.io", "write:packages"),
        # any request to ghcr.io would go through this dead proxy and fail differently: none is made
        env={
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "ALL_PROXY": "http://127.0.0.1:9",
        },
    ),
    # --- release records: promote, rollback, scan -------------------------------------------------
    Case(
        "promote-unknown-release",
        ("promote", "20250112-deadbeef", "--channel", CHANNEL),
        2,
        ("RELEASE 20250112-deadbeef: no release record", f"known: {RELEASE}"),
        (record(verdicts=True),),
        promotes=True,
    ),
    Case(
        "promote-channel-invalid",
        ("promote", RELEASE, "--channel", "Stable!"),
        2,
        ("--channel: 'Stable!'", "lowercase name"),
        (record(verdicts=True),),
        promotes=True,
    ),
    Case(
        "promote-force-without-reason",
        ("promote", RELEASE, "--channel", CHANNEL, "--force"),
        2,
        ("--force needs --reason",),
        (record(verdicts=False),),
        promotes=True,
    ),
    Case(
        "promote-tampered-record",
        ("promote", RELEASE, "--channel", CHANNEL),
        13,
        (
            f"promote {RELEASE} to {CHANNEL} refused: ",
            f"cpu/{SERVICE}: sha256:{'0b' * 6} has no signature by a trusted key",
        ),
        (record(verdicts=True),),
        promotes=True,
    ),
    Case(
        "rollback-without-history",
        ("rollback", "--channel", CHANNEL, "--registry", "{registry}"),
        13,
        (f"--channel {CHANNEL}: nothing to roll back", "expected a channel promoted at least twice"),
        promotes=True,
    ),
    Case(
        "allowlist-entry-without-reason",
        ("scan", RELEASE),
        2,
        ("scan-allowlist.toml: allow[0].reason: missing (required): expected a reason: why CVE-1 is accepted",),
        (record(verdicts=True), write("scan-allowlist.toml", '[[allow]]\nid = "CVE-1"\nexpires = 2030-01-01\n')),
    ),
    Case(
        "scan-severity-unknown",
        ("scan", RELEASE, "--severity", "CRITICAL,SEVERE"),
        2,
        ("--severity: 'SEVERE': expected a list of CRITICAL, HIGH",),
        (record(verdicts=True),),
    ),
]


# --- fixtures for the cases that need a different engine or registry --------------------------------


def wait_for(check: Callable[[], object], seconds: float = 30) -> None:
    retrying = tenacity.Retrying(stop=tenacity.stop_after_delay(seconds), wait=tenacity.wait_fixed(0.1), reraise=True)
    for attempt in retrying:
        with attempt:
            assert check()


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - a wedged daemon
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def classic_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A second, throw-away dockerd with the classic image store (no containerd-snapshotter feature),
    on its own socket and directories, without networking, so it touches nothing of the shared one."""
    if shutil.which("dockerd") is None:
        pytest.skip("dockerd is not installed")
    work = tmp_path_factory.mktemp("classic-dockerd")
    (work / "daemon.json").write_text("{}")  # not /etc/docker/daemon.json, which turns the snapshotter on
    socket = work / "docker.sock"
    # its own network namespace: even with --bridge=none, a second dockerd removes the host's docker0 on its
    # way (and the shared engine's containers then cannot start)
    argv = [
        "unshare",
        "--net",
        "dockerd",
        "--config-file",
        str(work / "daemon.json"),
        "--data-root",
        str(work / "data"),
    ]
    argv += ["--exec-root", str(work / "exec"), "--pidfile", str(work / "docker.pid"), "-H", f"unix://{socket}"]
    argv += ["--bridge=none", "--iptables=false", "--ip6tables=false", "--storage-driver=vfs"]
    with (work / "dockerd.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    env = {"DOCKER_HOST": f"unix://{socket}"}

    def answers() -> bool:
        assert proc.poll() is None, (work / "dockerd.log").read_text()[-2000:]
        info = ["docker", "info", "--format", "{{.ServerVersion}}"]
        return subprocess.run(info, env={**os.environ, **env}, capture_output=True, check=False).returncode == 0

    try:
        wait_for(answers)
        yield env
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A registry that wants htpasswd credentials, on 127.0.0.1:5003."""
    with htpasswd_registry(tmp_path_factory.mktemp("auth-registry"), AUTH_PORT, AUTH_USER, AUTH_PASSWORD) as host:
        yield {"host": host}


@pytest.fixture(scope="module")
def no_buildx(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A command prefix that runs shipyard in a private mount namespace where every system cli-plugins
    directory is an empty tmpfs: the docker CLI there really has no buildx (the host is unaffected)."""
    dirs = [d for d in SYSTEM_PLUGIN_DIRS if Path(d).is_dir()]
    mounts = " && ".join(f"mount -t tmpfs tmpfs {d}" for d in dirs) or "true"
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f'{mounts} && exec "$@"', "sh"]
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path_factory.mktemp("docker-config"))}  # as the cases run
    probe = subprocess.run(
        [*prefix, "docker", "buildx", "version"], env=env, capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        pytest.skip("docker finds buildx outside the system cli-plugins directories; cannot hide it here")
    if "unshare" in probe.stderr or "mount" in probe.stderr:
        pytest.skip(f"no private mount namespace here: {probe.stderr.strip()[:200]}")
    return prefix


# --- checks ------------------------------------------------------------------------------------------


def repositories(host: str, prefix: str, auth: tuple[str, str] | None = None) -> list[str]:
    """Every repository of the registry under ``prefix/``, following the catalog's pagination."""
    found: list[str] = []
    url: str | None = f"http://{host}/v2/_catalog?n=1000"
    while url:
        response = httpx.get(url, auth=auth, timeout=10)
        response.raise_for_status()
        found += [r for r in response.json().get("repositories") or [] if r.startswith(prefix + "/")]
        link = re.match(r'<([^>]+)>;\s*rel="next"', response.headers.get("Link", ""))
        url = f"http://{host}{link.group(1)}" if link else None
    return found


def tag_exists(host: str, repository: str, tag: str) -> bool:
    accept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"
    response = httpx.head(f"http://{host}/v2/{repository}/manifests/{tag}", headers={"Accept": accept}, timeout=10)
    assert response.status_code in (200, 404), response
    return response.status_code == 200


def substitute(text: str, registry: str) -> str:
    return text.replace("{registry}", registry)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_stops_with_one_line_and_nothing_built(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    host, auth = MAIN_REGISTRY, None
    prefix: list[str] = []
    env = dict(case.env)
    if case.needs == "auth_registry":
        host, auth = request.getfixturevalue("auth_registry")["host"], (AUTH_USER, AUTH_PASSWORD)
    elif case.needs == "classic_engine":
        env.update(request.getfixturevalue("classic_engine"))
    elif case.needs == "no_buildx":
        prefix = request.getfixturevalue("no_buildx")
    namespace = f"shipyard-bad-{case.id}-{RUN}"
    registry = f"{host}/{namespace}"

    root = make_project(tmp_path / "proj", services=(SERVICE,), commit=case.initial_commit)
    for mutation in case.mutate:
        mutation(root, registry)
    if case.initial_commit and case.commit:
        git(root, "add", "-A")
        git(root, "commit", "-q", "--allow-empty", "-m", f"bad input: {case.id}")
    releases = root / ".shipyard" / "releases"
    records_before = {p.name: p.read_bytes() for p in releases.glob("*.json")} if releases.is_dir() else {}
    (tmp_path / "docker-config").mkdir()

    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GITHUB_TOKEN", "SHIPYARD_REGISTRY_USERNAME", "SHIPYARD_REGISTRY_PASSWORD", "DOCKER_HOST")
        and not k.lower().endswith("_proxy")
    }
    full_env |= {
        "SHIPYARD_REGISTRY": registry,
        "SHIPYARD_BASE_OVERRIDE": "",  # the profiles' own bases: the cpu profile's is local, so absent here
        "SHIPYARD_CACHE_DIR": str(tmp_path / "cache"),
        "DOCKER_CONFIG": str(tmp_path / "docker-config"),  # empty: no stored logins, no current builder
        **{k: substitute(v, registry) for k, v in env.items()},
    }
    argv = [substitute(a, registry) for a in case.argv]
    result = subprocess.run(
        [*prefix, sys.executable, "-m", "shipyard", "--project", str(root), *argv],
        cwd=root,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    shown = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == case.code, shown
    assert case.code in EXIT_CODES
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shipyard: error: "), shown
    assert "Traceback" not in result.stderr + result.stdout
    for part in case.says:
        assert part in lines[0], f"{part!r} not in the error line\n{shown}"

    records_after = {p.name: p.read_bytes() for p in releases.glob("*.json")} if releases.is_dir() else {}
    assert records_after == records_before, "a release record was written or changed"
    assert repositories(host, namespace, auth) == [], f"something reached the registry under {namespace}"
    if case.promotes:
        assert not tag_exists(host, f"{namespace}/cpu/{SERVICE}", CHANNEL)
        assert not tag_exists(host, f"{namespace}/shipyard-ledger", CHANNEL)


def test_the_catalog_covers_the_issue() -> None:
    """At least 25 distinct cases, every documented failure class but the post-build ones represented."""
    assert len({c.id for c in CASES}) == len(CASES) >= 25
    assert {c.code for c in CASES} == {2, 3, 4, 5, 13}
