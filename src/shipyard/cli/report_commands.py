"""``shipyard report``, its options, help and handler: the release report (HTML, Markdown) from the record,
its reports, the channel and deployment ledgers, and the models' signatures and signed verdicts in the
registry."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from ..config.catalog import load_catalog
from ..config.keys import resolve_keys
from ..config.registry import parse_registry
from ..errors import ConfigError, RegistryError
from ..oci.client import RegistryClient
from ..oci.credentials import credentials_for
from ..oci.reference import RegistryNamespace
from ..oci.retry import RetryPolicy
from ..oci.signing import PublicKey
from ..record import ReleaseRecord, find_record, load_record
from ..release.channels.ledger import Entry, load_ledger
from ..release.channels.promote import check_channel
from ..release.channels.trust import Evidence, evidence
from ..release.deploy.deployments import Deployment, load_deployments
from ..report.html import render_html
from ..report.markdown import render_markdown
from ..report.model import FromRegistry, build_report, load_findings, load_verify, write_report
from .console import Console
from .options import REGISTRY, RELEASE, Arguments, Option
from .verb import Verb

DEFAULT_CHANNELS = ("canary", "stable")
# The history is one part of the report, not a gate: a registry that does not answer is said so in the
# report after a few seconds, rather than holding up the end of a release for the default 90 s deadline.
LEDGER_POLICY = RetryPolicy(attempts=2, deadline_s=10.0, timeout_s=5.0)
Ledgers = dict[str, list[Entry] | str]
Deployments = dict[str, list[Deployment] | str]
ModelEvidence = dict[str, Evidence | str]
T = TypeVar("T")


def fetch_ledgers(registry: RegistryClient, namespace: str, channels: Sequence[str]) -> tuple[Ledgers, str]:
    """Each channel's ledger entries (or why that ledger is unreadable), and a note when the registry is not
    reachable at all."""
    try:
        registry.ping()
    except RegistryError as exc:
        return {}, f"Promotion history not shown: the registry {registry.target} is not reachable ({exc})."
    ledgers: Ledgers = _read_each(
        channels, lambda c: load_ledger(registry, namespace, c).entries, "The {} ledger could not be read: {}"
    )
    return ledgers, ""


def fetch_deployments(registry: RegistryClient, namespace: str, targets: Sequence[str]) -> Deployments:
    """Each deploy target's deployment ledger entries, or why that ledger is unreadable."""
    return _read_each(
        targets,
        lambda t: load_deployments(registry, namespace, t).entries,
        "The deployment ledger of {} could not be read: {}",
    )


def fetch_model_evidence(
    registry: RegistryClient, trusted: Sequence[PublicKey] | str, record: ReleaseRecord
) -> ModelEvidence:
    """Each model's trusted signers and signed verdicts, read by digest from the registry; or why they were
    not (``trusted`` a string: no keys to check with; a model in another registry; a read that failed)."""
    found: ModelEvidence = {}
    for name, model in record.models.items():
        host, _, path = model.repository.partition("/")
        if isinstance(trusted, str):
            found[name] = trusted
        elif host != registry.target.host:
            found[name] = f"the artifact is in {host}, not {registry.target.host}"
        else:
            try:
                found[name] = evidence(registry, trusted, path, model.digest)
            except RegistryError as exc:
                found[name] = f"the registry could not be read ({exc})"
    return found


def _trusted(root: Path, target: RegistryNamespace) -> list[PublicKey] | str:
    """The keys a signature must be by: shipyard.toml's [project] trusted_keys (and on the local registry its
    development key); or why there are none to check with."""
    try:
        trusted_keys = load_catalog(root).trusted_keys
    except ConfigError:
        trusted_keys = ()  # a record copied alone: the local registry's development key still answers
    try:
        return list(resolve_keys(trusted_keys, target).trusted)
    except ConfigError as exc:
        return f"no trusted keys ({exc})"


def _read_each(names: Sequence[str], read: Callable[[str], list[T]], unreadable: str) -> dict[str, list[T] | str]:
    """``read(name)`` for each name; where it raises RegistryError, ``unreadable`` (name, error) instead."""
    found: dict[str, list[T] | str] = {}
    for name in names:
        try:
            found[name] = read(name)
        except RegistryError as exc:
            found[name] = unreadable.format(name, exc)
    return found


def _targets(root: Path) -> list[str]:
    """The deploy targets of the project's catalog (none where it has no catalog: a record copied alone)."""
    try:
        return list(load_catalog(root).targets)
    except ConfigError:
        return []


@dataclass(frozen=True, kw_only=True)
class ReportArgs(Arguments):
    release: str | None
    channel: tuple[str, ...]
    registry: str | None


def cmd_report(args: ReportArgs, console: Console) -> int:
    root = args.project.resolve()
    record = load_record(find_record(root, args.release))
    channels = list(dict.fromkeys(check_channel(c) for c in args.channel or DEFAULT_CHANNELS))
    target = parse_registry(args.registry or record.registry)
    with RegistryClient(target, credentials_for(target), policy=LEDGER_POLICY) as registry:
        ledgers, note = fetch_ledgers(registry, target.namespace, channels)
        deployments = {} if note else fetch_deployments(registry, target.namespace, _targets(root))
        unreachable = f"the registry {target} is not reachable"
        trusted = unreachable if note else _trusted(root, target) if record.models else []
        from_registry = FromRegistry(ledgers, note, deployments, fetch_model_evidence(registry, trusted, record))
    if note:
        console.line(note)
    report = build_report(
        record,
        verify=load_verify(root, record.release),
        findings=load_findings(root, record),
        from_registry=from_registry,
        generated=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    html_path, md_path = write_report(root, record.release, render_markdown(report), render_html(report))
    if args.json:
        console.data(json.dumps({"html": str(html_path), "markdown": str(md_path)}))
    else:
        console.line(f"report of {record.release}: {html_path} (open in a browser) and {md_path}")
    return 0


VERBS = (
    Verb(
        "report",
        help="write a release's report: self-contained HTML and Markdown (digests, gates, latency, promotions)",
        example="shipyard report 20250111-656873b3 --channel stable   "
        "(writes .shipyard/reports/<release>/report.html and report.md)",
        args=ReportArgs,
        run=cmd_report,
        options=(
            RELEASE,
            Option(
                ("--channel",),
                action="append",
                default=[],
                metavar="NAME",
                help="a channel whose ledger entries about this release to show (repeatable; default: canary and "
                "stable)",
            ),
            REGISTRY,
        ),
    ),
)
