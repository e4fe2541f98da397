"""The channel verbs, each with its options, help and handler: promote, rollback and history (the ledger),
by digest through the registry API; apart from the gates' verbs (release_commands.py), so that a
promotion imports no gate and its floor is the interpreter and these imports."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from ..config.registry import parse_registry
from ..errors import ConfigError
from ..oci.reference import RegistryNamespace
from ..release.channels.ledger import Entry, Ledger, load_ledger, short_key, verify_ledger
from ..release.channels.promote import Promoter, check_channel
from .console import Console, table
from .options import CHANNEL, PROFILES, REGISTRY, RELEASE, Arguments, Option
from .shared import reachable_registry, release_record, signing_keys
from .verb import Verb


@dataclass(frozen=True, kw_only=True)
class ChannelArgs(Arguments):
    """rollback's arguments; promote and history add theirs."""

    channel: str
    registry: str | None


@dataclass(frozen=True, kw_only=True)
class PromoteArgs(ChannelArgs):
    release: str | None
    profile: tuple[str, ...]
    force: bool
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class HistoryArgs(ChannelArgs):
    verify: bool


def _promoter(args: ChannelArgs, target: RegistryNamespace, console: Console) -> Promoter:
    keys = signing_keys(args.project.resolve(), target, console, project_optional=True)
    assert keys.signer is not None  # need_signer: resolve_keys raises without one
    registry = reachable_registry(target, console)
    return Promoter(registry, target.namespace, console.event, signer=keys.signer, trusted=keys.trusted)


def _entry_json(channel: str, entry: Entry | None) -> str:
    return json.dumps({"channel": channel, **(asdict(entry) if entry else {})}, indent=2, sort_keys=True)


def cmd_promote(args: PromoteArgs, console: Console) -> int:
    root, path, record = release_record(args)
    unknown = [p for p in args.profile if p not in {u.profile for u in record.units.values()}]
    if unknown:
        raise ConfigError(f"--profile: {unknown[0]!r} is not in release {record.release}")
    units = {k: u for k, u in record.units.items() if not args.profile or u.profile in args.profile}
    target = parse_registry(args.registry or record.registry)
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


def cmd_rollback(args: ChannelArgs, console: Console) -> int:
    target = parse_registry(args.registry)
    entry = _promoter(args, target, console).rollback(args.channel)
    console.line(f"{args.channel} is back on {entry.release} ({len(entry.digests)} units)")
    if args.json:
        console.data(_entry_json(args.channel, entry))
    return 0


def cmd_history(args: HistoryArgs, console: Console) -> int:
    target = parse_registry(args.registry)
    ledger = load_ledger(reachable_registry(target, console), target.namespace, check_channel(args.channel))
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


def _verify_history(args: HistoryArgs, console: Console, target: RegistryNamespace, ledger: Ledger) -> int:
    """``history --verify``: every hash link and signature, or LedgerBroken naming the first bad entry."""
    keys = signing_keys(args.project.resolve(), target, console, need_signer=False, project_optional=True)
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


VERBS = (
    Verb(
        "promote",
        help="point a channel at a release's digests (manifest PUT by digest, nothing rebuilt or pulled)",
        example="shipyard promote 20250111-656873b3 --channel stable",
        args=PromoteArgs,
        run=cmd_promote,
        options=(
            RELEASE,
            CHANNEL,
            PROFILES,
            Option(
                ("--force",), action="store_true", help="promote despite missing or failed verdicts (needs --reason)"
            ),
            Option(("--reason",), metavar="TEXT", help="why; recorded in the channel's ledger"),
            REGISTRY,
        ),
    ),
    Verb(
        "rollback",
        help="point a channel back at the release before its current one",
        example="shipyard rollback --channel stable",
        args=ChannelArgs,
        run=cmd_rollback,
        options=(CHANNEL, REGISTRY),
    ),
    Verb(
        "history",
        help="who promoted which release to a channel, and when (from the registry)",
        example="shipyard history --channel stable",
        args=HistoryArgs,
        run=cmd_history,
        options=(
            CHANNEL,
            REGISTRY,
            Option(
                ("--verify",),
                action="store_true",
                help="check every entry's hash link and signature against the project's trusted keys; "
                "exit 15 naming the first entry that does not hold",
            ),
        ),
    ),
)
