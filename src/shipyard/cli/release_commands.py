"""The gates' verbs, each with its options, help and handler: verify, scan, canary, and trivy-db (the
scan's vulnerability DB). The channel verbs are in channel_commands.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from ..config.profiles import load_profiles
from ..config.project import cache_dir
from ..config.registry import parse_registry
from ..errors import CanaryFailed, ConfigError, ScanFailed, VerifyFailed
from ..oci.credentials import credentials_for
from ..oci.reference import OCI_TAG_RE, RegistryNamespace
from ..record import ReleaseRecord, load_record, reports_dir
from ..release.engine import has_gpu
from ..release.gates.canary import CanaryGate
from ..release.gates.findings import GatePolicy, load_allowlist
from ..release.gates.gate import Signing, run_gate
from ..release.gates.scan import ScanGate, ScanOptions
from ..release.gates.trivy_db import push_db
from ..release.gates.verify import VerifyGate
from ..release.model_volumes import model_fetch_image
from ..runner import Runner
from ..verdicts import GateName
from .console import Console, print_canary_summary, print_scan_summary, print_verify_failures
from .options import OLD_RELEASE, REGISTRY, RELEASE, Arguments, Option, positive
from .shared import reachable_registry, release_record, signing_keys
from .verb import Verb


def cmd_verify(args: VerifyArgs, console: Console) -> int:
    root, path, record = release_record(args)
    target = parse_registry(args.registry or record.registry)
    registry = reachable_registry(target, console)
    keys = signing_keys(root, target, console)
    console.info(f"verifying {len(record.units)} units of {record.release} in {target} ({path.name})")
    try:
        layers = cache_dir() / "layers"  # listings by layer digest, kept between runs
        gate = VerifyGate(root, registry, trusted=keys.trusted, layer_cache=layers)
        report = run_gate(gate, path, console.event, Signing(keys.signer, lambda: nullcontext(registry)))
    except VerifyFailed:
        print_verify_failures(console, root, record.release)  # every failure, then the one-line error
        console.summarize(load_record(path), "verify")
        if args.json:  # the report of the failed checks, as on success
            console.data((reports_dir(root, record.release) / "verify.json").read_text())
        raise
    console.summarize(load_record(path), "verify")
    if args.json:
        console.data(report.to_json())
    skipped = [f for f in report.findings if f.status == "skip"]
    for finding in skipped:  # a check that did not run is said, with its reason: never counted as passed
        console.line(f"{finding.unit}: {finding.check} not checked ({finding.found})")
    passed = len(report.findings) - len(skipped)
    tail = f", {len(skipped)} skipped" if skipped else ""
    console.line(f"verify: all {passed} checks passed on {len(record.units)} units{tail}")
    return 0


def cmd_scan(args: ScanArgs, console: Console) -> int:
    root, path, record = release_record(args)
    allowlist = args.allowlist
    if allowlist is None and (root / "scan-allowlist.toml").is_file():
        allowlist = root / "scan-allowlist.toml"
    target = parse_registry(record.registry)
    options = ScanOptions(
        policy=GatePolicy.parse(args.severity, ignore_unfixed=args.ignore_unfixed),
        allowlist=tuple(load_allowlist(allowlist)),
        db_repository=args.db_repository or os.environ.get("SHIPYARD_TRIVY_DB_REPOSITORY") or None,
        jobs=args.jobs,
        cache_dir=cache_dir() / "trivy",
        credentials=credentials_for(target),
        skip_vulnerabilities=args.skip_vulnerabilities,
    )
    keys = signing_keys(root, target, console)
    console.info(f"scanning {len(record.units)} units of {record.release} ({args.jobs} in parallel)")
    signing = Signing(keys.signer, lambda: reachable_registry(target, console))
    with _gate(args, console, path, "scan", print_scan_summary):
        scanned = run_gate(ScanGate(root, Runner(echo=console.command), options), path, console.event, signing)
    scope = (
        "secrets and misconfigurations only, vulnerabilities NOT scanned"
        if args.skip_vulnerabilities
        else (args.severity)
    )
    console.line(f"scan: {len(scanned.units)} units passed the gate ({scope})")
    return 0


def cmd_trivy_db(args: TrivyDbArgs, console: Console) -> int:
    ref = args.to
    location, _, tag = ref.rpartition(":")
    if not location or "/" in tag or not tag:
        raise ConfigError(f"--to: {ref!r}: expected host/repository:tag, e.g. localhost:5000/mirror/trivy-db:2")
    if not OCI_TAG_RE.match(tag):
        raise ConfigError(
            f"--to: {ref!r}: tag {tag!r} is not a valid OCI tag; expected [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}, "
            f"e.g. localhost:5000/mirror/trivy-db:2"
        )
    host, _, repository = location.partition("/")
    target = parse_registry(f"{host}/{repository}", flag="--to")
    with reachable_registry(target, console) as registry:
        digest = push_db(registry, repository, tag, args.source)
    console.line(f"pushed Trivy DB {args.source} as {ref}@{digest}; scan with --db-repository {ref}")
    if args.json:
        console.data(json.dumps({"ref": ref, "digest": digest}))
    return 0


def cmd_canary(args: CanaryArgs, console: Console) -> int:
    root, path, record = release_record(args)
    console.info(f"canary of {record.release} on profile {args.profile or 'first in the release'}")
    # the record does not say which profiles have a GPU: the project's profiles do
    gpu_profiles = {name for name, p in load_profiles(root / "profiles", root=root).items() if has_gpu(p.hardware)}
    target = parse_registry(record.registry)
    keys = signing_keys(root, target, console)
    gate = CanaryGate(args.profile, gpu_profiles=gpu_profiles, fetch_image=lambda: _fetch_image(target, console))
    with _gate(args, console, path, "canary", print_canary_summary):
        ran = run_gate(gate, path, console.event, Signing(keys.signer, lambda: reachable_registry(target, console)))
    console.line(f"canary: {len(ran.units)} service(s) healthy, answering right and within their SLO")
    return 0


def _fetch_image(target: RegistryNamespace, console: Console) -> str:
    """The image that fills the canary's model volumes: the local Python base, from the release's registry."""
    with reachable_registry(target, console) as registry:
        return model_fetch_image(registry, Runner(), console.event)


@contextmanager
def _gate(
    args: Arguments,
    console: Console,
    path: Path,
    stage: GateName,
    print_table: Callable[[Console, ReleaseRecord], None],
) -> Iterator[None]:
    """Run a gate. Whatever happened, its table from the record; when it ran to a verdict (passed, or
    failed at the gate), the job summary and under --json the stage's verdicts by unit."""
    verdict = False
    try:
        yield
        verdict = True
    except (ScanFailed, CanaryFailed):
        verdict = True
        raise
    finally:
        record = load_record(path)
        print_table(console, record)
        if verdict:
            console.summarize(record, stage)
            if args.json:
                console.data(json.dumps(_verdicts(record, stage), indent=2, sort_keys=True))


def _verdicts(record: ReleaseRecord, stage: GateName) -> dict[str, object]:
    units = {key: v.to_dict() for key, unit in record.units.items() if (v := unit.verdicts.of(stage)) is not None}
    return {"release": record.release, "stage": stage, "units": units}


# --- the verbs: their typed arguments and options ----------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class VerifyArgs(Arguments):
    release: str | None
    registry: str | None


@dataclass(frozen=True, kw_only=True)
class ScanArgs(Arguments):
    release: str | None
    severity: str
    skip_vulnerabilities: bool
    ignore_unfixed: bool
    allowlist: Path | None
    db_repository: str | None
    jobs: int


@dataclass(frozen=True, kw_only=True)
class CanaryArgs(Arguments):
    release: str | None
    profile: str | None


@dataclass(frozen=True, kw_only=True)
class TrivyDbArgs(Arguments):
    action: str
    source: Path
    to: str


VERBS = (
    Verb(
        "verify",
        help="check every pushed image of a release from the registry (no pull)",
        example="shipyard verify 20250111-656873b3",
        args=VerifyArgs,
        run=cmd_verify,
        options=(RELEASE, OLD_RELEASE, REGISTRY),
    ),
    Verb(
        "scan",
        help="scan every image of a release with Trivy and gate on severity",
        example="shipyard scan --db-repository localhost:5000/mirror/trivy-db:2 --severity CRITICAL",
        args=ScanArgs,
        run=cmd_scan,
        options=(
            RELEASE,
            OLD_RELEASE,
            Option(
                ("--severity",),
                default="CRITICAL,HIGH:fixed",
                metavar="LIST",
                help="severities that fail the gate; ':fixed' = only when a fix exists (default: %(default)s)",
            ),
            Option(
                ("--skip-vulnerabilities",),
                action="store_true",
                help="no vulnerability DB to be had: scan secrets and misconfigurations only, and say so",
            ),
            Option(
                ("--ignore-unfixed",),
                action="store_true",
                help="vulnerabilities without a fix never fail the gate",
            ),
            Option(
                ("--allowlist",),
                type=Path,
                metavar="FILE",
                help="[[allow]] entries with id, reason, expires (default: scan-allowlist.toml if present)",
            ),
            Option(
                ("--db-repository",),
                metavar="REF",
                help="OCI ref of the Trivy DB (env SHIPYARD_TRIVY_DB_REPOSITORY; default: Trivy's public one)",
            ),
            Option(
                ("--jobs",),
                type=positive,
                default_factory=lambda: min(4, os.cpu_count() or 1),
                metavar="N",
                help="trivy processes in parallel (default: %(default)s)",
            ),
        ),
    ),
    Verb(
        "canary",
        help="run the release's services of one profile, hardened, and check health, answers and latency",
        example="shipyard canary 20250111-656873b3 --profile cpu   (the engine of DOCKER_HOST)",
        args=CanaryArgs,
        run=cmd_canary,
        options=(
            RELEASE,
            OLD_RELEASE,
            Option(("--profile",), metavar="NAME", help="profile to canary (default: the first of the release)"),
        ),
    ),
    Verb(
        "trivy-db",
        help="mirror a Trivy vulnerability DB into an OCI registry (air-gapped sites)",
        example="shipyard trivy-db push ~/.cache/trivy/db --to localhost:5000/mirror/trivy-db:2",
        args=TrivyDbArgs,
        run=cmd_trivy_db,
        options=(
            Option(("action",), choices=("push",), help="push: upload the DB as the OCI artifact Trivy pulls"),
            Option(("source",), type=Path, help="a directory with trivy.db and metadata.json, or a .tar.gz of them"),
            Option(("--to",), required=True, metavar="HOST/REPO:TAG", help="where to push it"),
        ),
    ),
)
