"""The front door: `nox -s build` runs the main job end to end, `nox -s tests` the test suite, `nox -s train`
regenerates the demo services' models.

Sessions that need the engine and the registry bring them up themselves (scripts/up.sh,
idempotent). Virtualenvs are reused, and the project is reinstalled only when
pyproject.toml changed, so a warm `nox -s build` spends its time on the build.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.reuse_venv = "yes"
nox.options.sessions = ["build"]
nox.options.default_venv_backend = "venv"


def install(session: nox.Session, *extras: str) -> None:
    """Install the project (editable) unless this venv already has this pyproject.toml."""
    spec = f".[{','.join(extras)}]" if extras else "."
    stamp = Path(session.virtualenv.location) / ".shipyard-installed"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + spec.encode()).hexdigest()
    if stamp.is_file() and stamp.read_text() == digest:
        return
    session.install("-e", spec)
    stamp.write_text(digest)


def up(session: nox.Session) -> None:
    session.run("bash", str(ROOT / "scripts" / "up.sh"), external=True)


def run_stage(session: nox.Session, verb: str) -> None:
    """One pipeline stage: the project installed, the engine and registry up, `shipyard VERB ARGS…`."""
    install(session)
    up(session)
    session.run("shipyard", verb, *session.posargs)


@nox.session(name="up", python=False)
def up_session(session: nox.Session) -> None:
    """Install (if missing) and start the Docker engine and the local registry."""
    up(session)


@nox.session(python=False)
def down(session: nox.Session) -> None:
    """Stop the local registry and the engine started by `up`."""
    session.run("bash", str(ROOT / "scripts" / "down.sh"), external=True)


@nox.session
def render(session: nox.Session) -> None:
    """Render every template for every profile into .shipyard/rendered/."""
    install(session)
    session.run("shipyard", "render", *session.posargs)


def trainers() -> list[Path]:
    """Each service's training step: ``services/<service>/<package>/train.py``, in path order."""
    return sorted(ROOT.glob("services/*/*/train.py"))


@nox.session(python=False)
def train(session: nox.Session) -> None:
    """Regenerate every models/<name>/ from its service's training step (the same bytes on every run).

    The steps need the standard library only, so this runs with nox's own interpreter, no virtualenv.
    Commit what it writes: the build ships the committed files. `nox -s train -- --check` writes nothing
    and fails when a committed model is not what training gives.
    """
    for script in trainers():
        module = f"{script.parent.name}.train"
        session.run(
            sys.executable, "-m", module, *session.posargs, env={"PYTHONPATH": str(script.parents[1])}, external=True
        )


@nox.session
def build(session: nox.Session) -> None:
    """Build every image of every profile, push it with a YYYYMMDD-<sha> tag, write the release record.

    On this kind of machine the GPU profiles cannot pull their upstream bases, so they build
    on the local base (SHIPYARD_BASE_OVERRIDE=local) unless the caller set another override.
    Pass shipyard options after --, e.g. `nox -s build -- --profile cpu -v`.
    """
    install(session)
    up(session)
    env = {"SHIPYARD_BASE_OVERRIDE": os.environ.get("SHIPYARD_BASE_OVERRIDE", "local")}
    session.run("shipyard", "build", *session.posargs, env=env)


@nox.session
def tests(session: nox.Session) -> None:
    """Unit tests, service tests and the integration tests against the real engine and registry."""
    install(session, "dev")
    up(session)
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    install(session, "dev")
    session.run("ruff", "check", "src", "tests", "services", "bench", "noxfile.py")
    session.run("mypy")


@nox.session
def verify(session: nox.Session) -> None:
    """Verify the newest release (or `-- RELEASE`) from the registry."""
    run_stage(session, "verify")


@nox.session
def scan(session: nox.Session) -> None:
    """Scan the newest release (or `-- RELEASE`) with Trivy and gate on severity."""
    run_stage(session, "scan")


@nox.session
def canary(session: nox.Session) -> None:
    """Canary the newest release's services on its first profile (or `-- --profile NAME`)."""
    run_stage(session, "canary")


@nox.session
def promote(session: nox.Session) -> None:
    """Promote a release to a channel: `nox -s promote -- [RELEASE] --channel stable`."""
    run_stage(session, "promote")


@nox.session
def prune(session: nox.Session) -> None:
    """Delete old releases from the registry: `nox -s prune -- --keep 5 --dry-run`."""
    run_stage(session, "prune")


@nox.session
def rollout(session: nox.Session) -> None:
    """Deploy a channel to every target of shipyard.toml, canary targets first, then batches:
    `nox -s rollout -- --channel stable [--batch-size N]` (default channel: stable)."""
    install(session)
    up(session)
    args = session.posargs if "--channel" in session.posargs else ["--channel", "stable", *session.posargs]
    session.run("shipyard", "rollout", *args)


@nox.session
def release(session: nox.Session) -> None:
    """The batch rollout: build → verify → scan → canary (canary profile) → promote it to `canary` →
    promote every profile to `stable` → roll `stable` out to the targets (the demo's `local`: this
    host). Stops at the first failed gate; nothing is promoted or deployed beyond it.

    The vulnerability DB comes from SHIPYARD_TRIVY_DB_REPOSITORY (a mirror, see docs/sites/air-gapped.md). Without one
    the scan runs with --skip-vulnerabilities, says so, and records "vulnerabilities": "skipped".
    """
    install(session)
    up(session)
    env = {"SHIPYARD_BASE_OVERRIDE": os.environ.get("SHIPYARD_BASE_OVERRIDE", "local")}
    canary_profile = os.environ.get("SHIPYARD_CANARY_PROFILE", "cpu")
    session.run("shipyard", "build", *session.posargs, env=env)
    session.run("shipyard", "verify")
    scan_args = [] if os.environ.get("SHIPYARD_TRIVY_DB_REPOSITORY") else ["--skip-vulnerabilities"]
    session.run("shipyard", "scan", *scan_args)
    session.run("shipyard", "canary", "--profile", canary_profile)
    session.run("shipyard", "promote", "--channel", "canary", "--profile", canary_profile)
    session.run("shipyard", "promote", "--channel", "stable")
    session.run("shipyard", "rollout", "--channel", "stable")
    # the newest record is the one this session built (and verify, scan and canary just rewrote)
    session.run("shipyard", "report")


@nox.session
def bench(session: nox.Session) -> None:
    """shipyard vs docker buildx bake (and promote vs skopeo copy); writes bench/RESULTS.md.

    `nox -s bench` measures this repo's catalog; `nox -s bench -- --scale 18,50,100` the scaling
    benchmark on generated catalogs of 18, 50 and 100 units (bench/scale.py; also bench/scaling.svg).
    `nox -s bench -- --models [--rounds 3]`: a new version of a 1 GiB model released (push, verify, sign)
    vs `oras push` of the same files, seconds and peak memory of both (bench/models.py).
    `nox -s bench -- --concurrency [--minutes 5]`: promote, rollback, deploy and prune on one namespace
    through a fault proxy for N minutes; operations, refusals, failures and the invariants (bench/concurrency.py).
    `nox -s bench -- --breakdown [--scale 18]`: where a cold and a one-changed build spend their seconds
    (bench/breakdown.py; shipyard's own Python sampled by py-spy).
    """
    install(session)
    if "--breakdown" in session.posargs:
        session.install("py-spy")
    up(session)
    if "--models" in session.posargs:
        session.run("python", "bench/models.py", *session.posargs)
        return
    session.run("python", "bench/run.py", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the manual (docs/, mkdocs.yml) into site/ with `mkdocs build --strict`; `-- serve` serves it."""
    install(session, "dev")
    command = session.posargs or ["build", "--strict"]
    session.run("mkdocs", *command, env={"NO_MKDOCS_2_WARNING": "1"})
