"""Release-side commands: verify, scan, canary, promote, rollback, history, trivy-db."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from ..config.catalog import CATALOG_FILE, load_catalog
from ..config.keys import Keys, is_local, resolve_keys
from ..config.profiles import load_profiles
from ..config.project import cache_dir
from ..config.registry import parse_target
from ..errors import CanaryFailed, ConfigError, ScanFailed, VerifyFailed
from ..oci.credentials import credentials_for
from ..oci.reference import OCI_TAG_RE, RegistryTarget
from ..record import ReleaseRecord, load_record, reports_dir
from ..release.channels.ledger import Entry, Ledger, load_ledger, short_key, verify_ledger
from ..release.channels.promote import Promoter, check_channel
from ..release.gates.canary import canary_release
from ..release.gates.engine import has_gpu
from ..release.gates.findings import GatePolicy, load_allowlist
from ..release.gates.scan import ScanOptions, scan_release
from ..release.gates.trivy_db import push_db
from ..release.gates.verdicts import attest_gate
from ..release.gates.verify import verify_release
from ..runner import Runner
from .console import Console, print_canary_summary, print_scan_summary, print_verify_failures, table
from .key_commands import key_password
from .shared import _keys, _reachable_registry, _release, _target


def cmd_verify(args: argparse.Namespace, console: Console) -> int:
    root, path, record = _release(args)
    target = parse_target(args.registry or record.registry)
    registry = _reachable_registry(target, console)
    keys = _keys(root, target, console)
    console.info(f"verifying {len(record.units)} units of {record.release} in {target} ({path.name})")
    try:
        layers = cache_dir() / "layers"  # listings by layer digest, kept between runs
        report = verify_release(
            root, path, registry, console.event, trusted=keys.trusted, signer=keys.signer, layer_cache=layers
        )
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


def cmd_scan(args: argparse.Namespace, console: Console) -> int:
    root, path, record = _release(args)
    allowlist = args.allowlist
    if allowlist is None and (root / "scan-allowlist.toml").is_file():
        allowlist = root / "scan-allowlist.toml"
    target = parse_target(record.registry)
    options = ScanOptions(
        policy=GatePolicy.parse(args.severity, ignore_unfixed=args.ignore_unfixed),
        allowlist=tuple(load_allowlist(allowlist)),
        db_repository=args.db_repository or os.environ.get("SHIPYARD_TRIVY_DB_REPOSITORY") or None,
        jobs=args.jobs,
        cache_dir=cache_dir() / "trivy",
        credentials=credentials_for(target),
        skip_vulnerabilities=args.skip_vulnerabilities,
    )
    keys = _keys(root, target, console)
    console.info(f"scanning {len(record.units)} units of {record.release} ({args.jobs} in parallel)")
    policy = {
        "severity": args.severity,
        "ignore_unfixed": args.ignore_unfixed,
        "vulnerabilities": not args.skip_vulnerabilities,
    }
    with _gate(args, console, path, "scan", print_scan_summary), _signing(target, keys, path, "scan", policy, console):
        verdicts = scan_release(root, path, Runner(echo=console.command), options, console.event)
    scope = (
        "secrets and misconfigurations only, vulnerabilities NOT scanned"
        if args.skip_vulnerabilities
        else (args.severity)
    )
    console.line(f"scan: {len(verdicts)} units passed the gate ({scope})")
    return 0


def cmd_trivy_db(args: argparse.Namespace, console: Console) -> int:
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
    target = parse_target(f"{host}/{repository}", flag="--to")
    with _reachable_registry(target, console) as registry:
        digest = push_db(registry, repository, tag, args.source)
    console.line(f"pushed Trivy DB {args.source} as {ref}@{digest}; scan with --db-repository {ref}")
    if args.json:
        console.data(json.dumps({"ref": ref, "digest": digest}))
    return 0


def cmd_canary(args: argparse.Namespace, console: Console) -> int:
    root, path, record = _release(args)
    console.info(f"canary of {record.release} on profile {args.profile or 'first in the release'}")
    # the record does not say which profiles have a GPU: the project's profiles do
    gpu_profiles = {name for name, p in load_profiles(root / "profiles", root=root).items() if has_gpu(p.hardware)}
    target = parse_target(record.registry)
    keys = _keys(root, target, console)
    policy = {
        "profile": args.profile or "first in the release",
        "probes": "health, golden request, p95 against the SLO",
    }
    with (
        _gate(args, console, path, "canary", print_canary_summary),
        _signing(target, keys, path, "canary", policy, console),
    ):
        verdicts = canary_release(path, args.profile, console.event, gpu_profiles=gpu_profiles)
    console.line(f"canary: {len(verdicts)} service(s) healthy, answering right and within their SLO")
    return 0


def _channel_keys(args: argparse.Namespace, target: RegistryTarget, *, need_signer: bool) -> Keys:
    """The signing key and the trusted keys, from the project's [project] trusted_keys (no project: none,
    which the local registry's development key pair answers)."""
    root = args.project.resolve()
    if (root / CATALOG_FILE).is_file():
        trusted_keys: tuple[Path, ...] = load_catalog(root).trusted_keys
    elif is_local(target):
        trusted_keys = ()
    else:
        raise ConfigError(
            f"--project {root}: no {CATALOG_FILE} there; a channel's ledger is signed with the keys its [project] "
            f"trusted_keys names: point --project at the repository"
        )
    return resolve_keys(trusted_keys, target, password=key_password, need_signer=need_signer)


def _promoter(args: argparse.Namespace, target: RegistryTarget, console: Console) -> Promoter:
    keys = _channel_keys(args, target, need_signer=True)
    assert keys.signer is not None  # need_signer: resolve_keys raises without one
    if keys.development:
        console.info(f"signing the ledger entry with this machine's development key (trusted for {target.host} only)")
    registry = _reachable_registry(target, console)
    return Promoter(registry, target.namespace, console.event, signer=keys.signer, trusted=keys.trusted)


def _entry_json(channel: str, entry: Entry | None) -> str:
    return json.dumps({"channel": channel, **(asdict(entry) if entry else {})}, indent=2, sort_keys=True)


def cmd_promote(args: argparse.Namespace, console: Console) -> int:
    root, path, record = _release(args)
    unknown = [p for p in args.profile if p not in {u.profile for u in record.units.values()}]
    if unknown:
        raise ConfigError(f"--profile: {unknown[0]!r} is not in release {record.release}")
    units = {k: u for k, u in record.units.items() if not args.profile or u.profile in args.profile}
    target = parse_target(args.registry or record.registry)
    console.info(f"promoting {record.release} ({len(units)} units) to {args.channel} in {target}")
    check_channel(args.channel)
    if args.force and not (args.reason or "").strip():
        raise ConfigError("--force needs --reason '…': the reason is recorded in the channel's ledger")
    promoter = _promoter(args, target, console)
    promoter.promote(record, args.channel, units, force=args.force, reason=args.reason or "")
    console.summarize(record, "promote", {key: [args.channel] for key in units})
    if args.json:  # the channel's ledger entry for this promotion (or the one it already had)
        console.data(_entry_json(args.channel, promoter.entry))
    return 0


def cmd_rollback(args: argparse.Namespace, console: Console) -> int:
    target = _target(args)
    entry = _promoter(args, target, console).rollback(args.channel)
    console.line(f"{args.channel} is back on {entry.release} ({len(entry.digests)} units)")
    if args.json:
        console.data(_entry_json(args.channel, entry))
    return 0


def cmd_history(args: argparse.Namespace, console: Console) -> int:
    target = _target(args)
    ledger = load_ledger(_reachable_registry(target, console), target.namespace, check_channel(args.channel))
    if args.verify:
        return _verify_history(args, console, target, ledger)
    if args.json:
        console.data(ledger.to_json().decode())
        return 0
    if not ledger.entries:
        console.line(f"{args.channel}: no promotions yet in {target}")
        return 0
    rows: list[tuple[str, ...]] = [("when", "who", "action", "release", "units", "state", "note")]
    for e in ledger.entries:
        note = ("FORCED: " if e.forced else "") + e.reason
        rows.append((e.at, e.by[:30], e.action, e.release, str(len(e.digests)), e.state, note[:50]))
    table(console, rows)
    return 0


def _verify_history(args: argparse.Namespace, console: Console, target: RegistryTarget, ledger: Ledger) -> int:
    """``history --verify``: every hash link and signature, or LedgerBroken naming the first bad entry."""
    keys = _channel_keys(args, target, need_signer=False)
    signers = verify_ledger(ledger, keys.trusted)
    development = {k.key_id for k in keys.trusted} if keys.development else set()
    names = ", ".join(short_key(k) + (" (development key)" if k in development else "") for k in signers)
    if args.json:
        console.data(
            json.dumps({"channel": ledger.channel, "entries": len(ledger.entries), "verified": True, "keys": signers})
        )
    elif not ledger.entries:
        console.line(f"{ledger.channel}: no entries yet in {target}; nothing to verify")
    else:
        console.line(f"{ledger.channel}: {len(ledger.entries)} entries, chain and signatures verify (keys: {names})")
    return 0


@contextmanager
def _signing(
    target: RegistryTarget, keys: Keys, path: Path, gate: str, policy: dict[str, object], console: Console
) -> Iterator[None]:
    """When the gate ran to its verdicts (passed, or failed at the gate), sign and attach the verdict of
    each unit that passed; a unit that failed gets nothing."""
    try:
        yield
    except (ScanFailed, CanaryFailed):
        _attest(target, keys, path, gate, policy, console)
        raise
    _attest(target, keys, path, gate, policy, console)


def _attest(
    target: RegistryTarget, keys: Keys, path: Path, gate: str, policy: dict[str, object], console: Console
) -> None:
    if keys.signer is None:
        return
    with _reachable_registry(target, console) as registry:
        attest_gate(registry, keys.signer, load_record(path), gate, policy, console.event)


@contextmanager
def _gate(
    args: argparse.Namespace,
    console: Console,
    path: Path,
    stage: str,
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


def _verdicts(record: ReleaseRecord, stage: str) -> dict[str, object]:
    units = {key: unit.verdicts[stage] for key, unit in record.units.items() if stage in unit.verdicts}
    return {"release": record.release, "stage": stage, "units": units}
