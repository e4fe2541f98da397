"""The argparse parser of every command: options, help, examples; nothing runs here."""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from ..build import default_jobs


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        metavar="NAME",
        help="only this profile (repeatable; default: every profile in profiles/)",
    )
    p.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="NAME",
        help="only this image and its parents (repeatable; default: the whole catalog)",
    )
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="where images go, e.g. ghcr.io/acme (env SHIPYARD_REGISTRY; default localhost:5000/shipyard)",
    )
    p.add_argument(
        "--base-override",
        metavar="local|ROLE=REF",
        help="replace profile bases: 'local' builds every profile on the local base (env SHIPYARD_BASE_OVERRIDE)",
    )
    p.add_argument(
        "--allow-dirty", action="store_true", help="build an uncommitted tree, tagged YYYYMMDD-<sha>-dirty-<hash>"
    )


def _add_common(parser: argparse.ArgumentParser, default: object) -> None:
    """-v/-q/--project work before and after the subcommand (SUPPRESS keeps the top-level value)."""
    parser.add_argument(
        "--project",
        type=Path,
        default=Path.cwd() if default is None else default,
        metavar="DIR",
        help="the repository with shipyard.toml, profiles/ and dockerfiles/ (default: .)",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0 if default is None else default,
        help="show every command run (-vv: and buildx output)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", default=False if default is None else default, help="only results"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="stdout is one JSON document (the plan, the release record, the verdicts, the ledger entry…); "
        "no progress unless -v, and then on stderr",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``shipyard: error:`` line like every other error (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"shipyard: error: {message} (see `{self.prog} --help`)\n")


def _add_command(
    sub: argparse._SubParsersAction[Parser], common: Parser, name: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` opens with its one-line help (and lists its example in the epilog)."""
    kwargs.setdefault("description", kwargs.get("help"))
    return sub.add_parser(name, parents=[common], **kwargs)


def make_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="shipyard",
        description="Build, push and release the container images of ML inference services.",
        epilog="example: shipyard build --profile cpu --image model-ops-coordinator -v",
    )
    parser.add_argument("--version", action="version", version=f"shipyard {__version__}")
    _add_common(parser, None)
    common = Parser(add_help=False)
    _add_common(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = functools.partial(_add_command, sub, common)

    add(
        "up",
        help="install and start the Docker engine and the local registry (idempotent)",
        epilog="example: shipyard up   (Debian as root installs what is missing; elsewhere it names it)",
    )
    add(
        "down",
        help="stop the local registry and the engine started by `up`",
        epilog="example: shipyard down",
    )
    p = add(
        "base",
        help="build and push the local base images (mmdebstrap)",
        epilog="example: shipyard base --registry localhost:5000/shipyard --rebuild",
    )
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="where the bases go (env SHIPYARD_REGISTRY; default localhost:5000/shipyard)",
    )
    p.add_argument("--rebuild", action="store_true", help="build even when the registry has it")
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        choices=["linux/amd64", "linux/arm64"],
        help="the platforms of the base (repeatable; several: one index over an image each; default linux/amd64)",
    )
    p = add(
        "plan",
        help="print the build units in order, with their tags",
        epilog="example: shipyard plan --profile pc2 --json",
    )
    _add_selection(p)
    p = add(
        "render",
        help="render the Dockerfiles of the plan into .shipyard/rendered/",
        epilog="example: shipyard render --profile mainpc --image family-web",
    )
    _add_selection(p)
    p = add(
        "build",
        help="render, build with buildx (registry cache), push and write the release record",
        epilog="example: shipyard build --registry ghcr.io/acme --base-override local",
    )
    _add_selection(p)
    p.add_argument("--builder", metavar="NAME", help="buildx builder to use (default: the current one)")
    p.add_argument(
        "--jobs",
        type=_positive,
        default=default_jobs(),
        metavar="N",
        help="units built at once; a unit starts when its parent is done (default: twice the cores, %(default)s)",
    )
    p.add_argument(
        "--no-reuse",
        action="store_true",
        help="build every unit even when the registry has an image with the same inputs",
    )
    p.add_argument(
        "--no-attest",
        action="store_true",
        help="push no provenance and no SBOM (units are still signed); verify fails such units, and a later "
        "build rebuilds them rather than reuse them: for measuring and throwaway builds",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and the exact commands; run nothing")
    p = add(
        "bake-file",
        help="write the plan as a docker-bake.json (same targets, args, tags, cache) for docker buildx bake",
        epilog="example: shipyard bake-file --output docker-bake.json && docker buildx bake -f docker-bake.json",
    )
    _add_selection(p)
    p.add_argument(
        "--output",
        type=Path,
        default=Path("docker-bake.json"),
        metavar="FILE",
        help="where to write it (default: %(default)s)",
    )
    p = add(
        "verify",
        help="check every pushed image of a release from the registry (no pull)",
        epilog="example: shipyard verify --release 20250111-656873b3",
    )
    p.add_argument("--release", metavar="TAG", help="the release to verify (default: the newest record)")
    p.add_argument("--registry", metavar="HOST/NAMESPACE", help="registry of the release (default: the record's)")
    p = add(
        "scan",
        help="scan every image of a release with Trivy and gate on severity",
        epilog="example: shipyard scan --db-repository localhost:5000/mirror/trivy-db:2 --severity CRITICAL",
    )
    p.add_argument("--release", metavar="TAG", help="the release to scan (default: the newest record)")
    p.add_argument(
        "--severity",
        default="CRITICAL,HIGH:fixed",
        metavar="LIST",
        help="severities that fail the gate; ':fixed' = only when a fix exists (default: %(default)s)",
    )
    p.add_argument(
        "--skip-vulnerabilities",
        action="store_true",
        help="no vulnerability DB to be had: scan secrets and misconfigurations only, and say so",
    )
    p.add_argument("--ignore-unfixed", action="store_true", help="vulnerabilities without a fix never fail the gate")
    p.add_argument(
        "--allowlist",
        type=Path,
        metavar="FILE",
        help="[[allow]] entries with id, reason, expires (default: scan-allowlist.toml if present)",
    )
    p.add_argument(
        "--db-repository",
        metavar="REF",
        help="OCI ref of the Trivy DB (env SHIPYARD_TRIVY_DB_REPOSITORY; default: Trivy's public one)",
    )
    p.add_argument(
        "--jobs",
        type=_positive,
        default=min(4, os.cpu_count() or 1),
        metavar="N",
        help="trivy processes in parallel (default: %(default)s)",
    )
    p = add(
        "canary",
        help="run the release's services of one profile, hardened, and check health, answers and latency",
        epilog="example: shipyard canary --profile cpu --release 20250111-656873b3   (the engine of DOCKER_HOST)",
    )
    p.add_argument("--release", metavar="TAG", help="the release (default: the newest record)")
    p.add_argument("--profile", metavar="NAME", help="profile to canary (default: the first of the release)")
    p = add(
        "promote",
        help="point a channel at a release's digests (manifest PUT by digest, nothing rebuilt or pulled)",
        epilog="example: shipyard promote 20250111-656873b3 --channel stable",
    )
    p.add_argument("release", nargs="?", metavar="RELEASE", help="release tag (default: the newest record)")
    p.add_argument("--channel", required=True, metavar="NAME", help="e.g. canary or stable")
    p.add_argument("--profile", action="append", default=[], metavar="NAME", help="only this profile (repeatable)")
    p.add_argument("--force", action="store_true", help="promote despite missing or failed verdicts (needs --reason)")
    p.add_argument("--reason", metavar="TEXT", help="why; recorded in the channel's ledger")
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="the release's registry, reached under another address (default: the record's)",
    )
    p = add(
        "rollback",
        help="point a channel back at the release before its current one",
        epilog="example: shipyard rollback --channel stable",
    )
    p.add_argument("--channel", required=True, metavar="NAME", help="the channel to move back, e.g. stable")
    p.add_argument("--registry", metavar="HOST/NAMESPACE", help="default: SHIPYARD_REGISTRY or localhost:5000/shipyard")
    p = add(
        "history",
        help="who promoted which release to a channel, and when (from the registry)",
        epilog="example: shipyard history --channel stable",
    )
    p.add_argument("--channel", required=True, metavar="NAME", help="the channel whose ledger to show")
    p.add_argument("--registry", metavar="HOST/NAMESPACE", help="default: SHIPYARD_REGISTRY or localhost:5000/shipyard")
    p.add_argument(
        "--verify",
        action="store_true",
        help="check every entry's hash link and signature against the project's trusted keys; "
        "exit 15 naming the first entry that does not hold",
    )
    p = add(
        "report",
        help="write a release's report: self-contained HTML and Markdown (digests, gates, latency, promotions)",
        epilog="example: shipyard report 20250111-656873b3 --channel stable   "
        "(writes .shipyard/reports/<release>/report.html and report.md)",
    )
    p.add_argument("release", nargs="?", metavar="RELEASE", help="release tag (default: the newest record)")
    p.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="NAME",
        help="a channel whose ledger entries about this release to show (repeatable; default: canary and stable)",
    )
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="where the ledgers are, if not under the record's registry address",
    )
    p = add(
        "model-signature",
        help="write a released model's sigstore model-signing bundle (and its key) for `model_signing verify key`",
        epilog="example: shipyard model-signature --model affect-nb -o model.sig --public-key model.pub && "
        "model_signing verify key models/affect-nb --signature model.sig --public_key model.pub",
    )
    p.add_argument("--release", metavar="TAG", help="the release (default: the newest record)")
    p.add_argument("--model", required=True, metavar="NAME", help="a model of the release (shipyard.toml [models])")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="where to write the bundle")
    p.add_argument("--public-key", type=Path, metavar="FILE", help="also write the trusted key that signed it (PEM)")
    p.add_argument("--registry", metavar="HOST/NAMESPACE", help="registry of the release (default: the record's)")
    p = add(
        "trivy-db",
        help="mirror a Trivy vulnerability DB into an OCI registry (air-gapped sites)",
        epilog="example: shipyard trivy-db push ~/.cache/trivy/db --to localhost:5000/mirror/trivy-db:2",
    )
    p.add_argument("action", choices=["push"], help="push: upload the DB as the OCI artifact Trivy pulls")
    p.add_argument("source", type=Path, help="a directory with trivy.db and metadata.json, or a .tar.gz of them")
    p.add_argument("--to", required=True, metavar="HOST/REPO:TAG", help="where to push it")
    p = add(
        "compose-file",
        help="a deploy target's Docker Compose project: the channel's (or a release's) services by digest, hardened",
        epilog="example: shipyard compose-file --target local --channel stable --output compose.yaml",
    )
    p.add_argument("release", nargs="?", metavar="RELEASE", help="a release tag (gated as promote is); or --channel")
    p.add_argument("--target", required=True, metavar="NAME", help="a [targets.NAME] of shipyard.toml")
    p.add_argument("--channel", metavar="NAME", help="deploy what this channel's tags point at in the registry")
    p.add_argument("--output", type=Path, metavar="FILE", help="write it there (default: stdout)")
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="where the channel's tags are (env SHIPYARD_REGISTRY; default localhost:5000/shipyard)",
    )
    p = add(
        "deploy",
        help="deploy a channel (or a release) to one target with its strategy (blue-green behind the edge by "
        "default): plan, pull, start beside the old, check, switch, drain; the old one stays on any failure",
        epilog="example: shipyard deploy --target mainpc --channel stable --dry-run",
    )
    p.add_argument("release", nargs="?", metavar="RELEASE", help="a release tag (gated as promote is); or --channel")
    p.add_argument("--target", required=True, metavar="NAME", help="a [targets.NAME] of shipyard.toml")
    p.add_argument("--channel", metavar="NAME", help="deploy what this channel's tags point at in the registry")
    p.add_argument("--dry-run", action="store_true", help="print the plan (which service moves where); change nothing")
    p.add_argument(
        "--lock-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another deploy of the target to finish (default 0: refuse at once)",
    )
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="where the channels and ledgers are (env SHIPYARD_REGISTRY; default localhost:5000/shipyard)",
    )
    p = add(
        "rollout",
        help="deploy a channel to every target: canary targets first, then batches; stops at the first failure",
        epilog="example: shipyard rollout --channel stable --batch-size 2",
    )
    p.add_argument("--channel", required=True, metavar="NAME", help="the channel to roll out (from the registry)")
    p.add_argument("--batch-size", type=int, default=1, metavar="N", help="non-canary targets deployed at a time")
    p.add_argument("--target", dest="targets", action="append", metavar="NAME", help="only these targets (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print every target's plan; change nothing")
    p.add_argument(
        "--lock-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another deploy of a target to finish (default 0: refuse at once)",
    )
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="where the channels and ledgers are (env SHIPYARD_REGISTRY; default localhost:5000/shipyard)",
    )
    p = add(
        "status",
        help="what each target runs now, read from its engine: release, digest, colour, health, uptime; "
        "exits 18 when a target drifted from its channel or its last deployment",
        epilog="example: shipyard status --target local --json",
    )
    p.add_argument("--target", dest="targets", action="append", metavar="NAME", help="only these targets (repeatable)")
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="where the channels and ledgers are (env SHIPYARD_REGISTRY; default localhost:5000/shipyard)",
    )
    p = add(
        "deployments",
        help="a target's deployment ledger, from the registry: who deployed what, when, and how it went",
        epilog="example: shipyard deployments --target mainpc",
    )
    p.add_argument("--target", required=True, metavar="NAME", help="a [targets.NAME] of shipyard.toml")
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="where the channels and ledgers are (env SHIPYARD_REGISTRY; default localhost:5000/shipyard)",
    )
    p = add(
        "prune",
        help="delete old releases from the registry by digest, keeping what channels, ledgers and rollbacks need",
        epilog="example: shipyard prune --keep 5 --dry-run",
    )
    p.add_argument(
        "--keep", type=int, default=10, metavar="N", help="keep the newest N releases (default 10; at least 1)"
    )
    p.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="remove only releases older than DAYS (by their tag's date); never what the other rules keep",
    )
    p.add_argument(
        "--ledger-entries",
        type=int,
        default=10,
        metavar="K",
        help="keep every release named in the last K entries of each channel and deployment ledger (default 10)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, delete nothing")
    p.add_argument(
        "--registry",
        metavar="HOST/NAMESPACE",
        help="the registry and namespace to prune (env SHIPYARD_REGISTRY; default localhost:5000/shipyard)",
    )
    p = add(
        "keygen",
        help="write a signing key pair: PREFIX.key (ECDSA P-256, encrypted) and PREFIX.pub (trust it in shipyard.toml)",
        epilog="example: shipyard keygen --output keys/release",
    )
    p.add_argument("--output", type=Path, required=True, metavar="PREFIX", help="writes PREFIX.key and PREFIX.pub")
    p = add(
        "init",
        help="write a working project (catalog, cpu profile, templates, one service) without overwriting a file",
        epilog="example: shipyard init my-images && cd my-images && git init && git add -A && git commit -m init",
    )
    p.add_argument(
        "directory", nargs="?", type=Path, metavar="DIR", help="where (default: --project, else the current directory)"
    )
    p = add(
        "completion",
        help="print a shell completion script (bash, zsh or tcsh)",
        epilog="example: shipyard completion bash > /etc/bash_completion.d/shipyard",
    )
    p.add_argument("shell", choices=["bash", "zsh", "tcsh"], help="the shell to complete for")
    return parser
