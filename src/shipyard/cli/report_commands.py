"""``shipyard report``: the release report (HTML, Markdown) from the record, its reports, the channel and
deployment ledgers."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from ..config.catalog import load_catalog
from ..config.registry import parse_target
from ..errors import ConfigError, RegistryError
from ..oci.client import RegistryClient
from ..oci.credentials import credentials_for
from ..oci.retry import RetryPolicy
from ..record import find_record, load_record
from ..release.channels.ledger import Entry, load_ledger
from ..release.channels.promote import check_channel
from ..release.deploy.deployments import Deployment, load_deployments
from ..report.html import render_html
from ..report.markdown import render_markdown
from ..report.model import build_report, load_findings, load_verify, write_report
from .console import Console

DEFAULT_CHANNELS = ("canary", "stable")
# The history is one part of the report, not a gate: a registry that does not answer is said so in the
# report after a few seconds, rather than holding up the end of a release for the default 90 s deadline.
LEDGER_POLICY = RetryPolicy(attempts=2, deadline_s=10.0, timeout_s=5.0)
Ledgers = dict[str, list[Entry] | str]
Deployments = dict[str, list[Deployment] | str]
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


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    root = args.project.resolve()
    record = load_record(find_record(root, args.release, flag="RELEASE"))
    channels = list(dict.fromkeys(check_channel(c) for c in args.channel or DEFAULT_CHANNELS))
    target = parse_target(args.registry or record.registry)
    with RegistryClient(target, credentials_for(target), policy=LEDGER_POLICY) as registry:
        ledgers, note = fetch_ledgers(registry, target.namespace, channels)
        deployments = {} if note else fetch_deployments(registry, target.namespace, _targets(root))
    if note:
        console.line(note)
    report = build_report(
        record,
        verify=load_verify(root, record.release),
        findings=load_findings(root, record),
        ledgers=ledgers,
        history_note=note,
        generated=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        deployments=deployments,
    )
    html_path, md_path = write_report(root, record.release, render_markdown(report), render_html(report))
    if args.json:
        console.data(json.dumps({"html": str(html_path), "markdown": str(md_path)}))
    else:
        console.line(f"report of {record.release}: {html_path} (open in a browser) and {md_path}")
    return 0
