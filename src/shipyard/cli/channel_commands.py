"""The channel verbs: promote, rollback and history (the ledger), by digest through the registry API.

Apart from the gates' commands (release_commands.py), so that a promotion imports no gate: it is a
few registry round trips, and its floor is the interpreter and these imports.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ..config.registry import parse_target
from ..errors import ConfigError
from ..oci.reference import RegistryTarget
from ..release.channels.ledger import Entry, Ledger, load_ledger, short_key, verify_ledger
from ..release.channels.promote import Promoter, check_channel
from .console import Console, table
from .shared import _keys, _reachable_registry, _release, _target


def _promoter(args: argparse.Namespace, target: RegistryTarget, console: Console) -> Promoter:
    keys = _keys(args.project.resolve(), target, console, project_optional=True)
    assert keys.signer is not None  # need_signer: resolve_keys raises without one
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
    keys = _keys(args.project.resolve(), target, console, need_signer=False, project_optional=True)
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
