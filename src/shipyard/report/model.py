"""The release report's model: ``build_report`` is pure (the record, its verify and scan reports and what the
registry said, ``FromRegistry``, in; a ``ReleaseReport`` out), rendered by markdown.py and html.py and
stored by ``write_report``; ``load_verify`` and ``load_findings`` read the inputs on disk."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..record import ModelRecord, ReleaseRecord, UnitRecord, reports_dir, write_atomic
from ..release.channels.ledger import Entry
from ..release.channels.trust import Evidence
from ..release.deploy.deployments import Deployment
from ..release.gates.findings import SEVERITIES, ScanFinding, image_report_name, parse_report
from ..release.gates.verdicts import SignedVerdict
from ..verdicts import CanaryVerdict, ModelVerifyVerdict

TOP_FINDINGS = 15
_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class VerifyTally:
    """One unit's verify results: counts from verify.json, or only the record's verdict when that is all."""

    passed: int | None  # None: only the record's verdict is known, not the checks
    failed: tuple[str, ...] = ()  # "check: expected …, found …"
    skipped: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(frozen=True)
class TopFinding:
    finding: ScanFinding  # its platform left out: ``platforms`` has every one it was found in
    units: tuple[str, ...]
    blocking: bool
    suppressed: bool
    platforms: tuple[str, ...] = ()  # the platforms' images it was found in ("" not listed: the Dockerfile's)
    multi_platform: bool = False  # one of ``units`` has more than one platform: the report names them

    @property
    def where(self) -> str:
        """The finding's target, with the platforms it was found in when a unit of it has several."""
        if not self.multi_platform or not self.platforms:
            return self.finding.target
        return f"{self.finding.target} ({', '.join(self.platforms)})"


@dataclass(frozen=True)
class HistoryRow:
    entry: Entry
    relation: str  # "promoted", "rolled back to" or "replaced by <release>"
    units: tuple[str, ...]  # this release's units the entry moved the channel to or away from


@dataclass(frozen=True)
class ChannelHistory:
    channel: str
    rows: tuple[HistoryRow, ...] = ()
    entries: int = 0  # in the channel's whole ledger
    error: str = ""  # the channel's ledger could not be read

    def empty_text(self) -> str:
        if not self.entries:
            return f"No promotions to {self.channel} yet."
        return f"The {self.channel} ledger has {self.entries} entries; none of them mentions this release."


@dataclass(frozen=True)
class Placement:
    """Where the release runs: a target's newest deployment of its digests, from the deployment ledger."""

    target: str
    state: str  # running, replaced by <release>, rolled-back, failed, in-progress, not deployed, or why unreadable
    at: str = ""
    release: str = ""  # the release that entry deployed: this one, or another with the same digests
    p95_ms: float | None = None  # the live check's, through the target's ports
    strategy: str = ""


def placements(record: ReleaseRecord, deployments: Mapping[str, Sequence[Deployment] | str]) -> tuple[Placement, ...]:
    """Per target (``deployments``: its ledger's entries, or why it could not be read): the newest entry that
    deployed this release, or its digests under another release's name, and whether it still runs there."""
    mine = {unit.digest for unit in record.units.values()}
    found = []
    for target, entries in deployments.items():
        if isinstance(entries, str):
            found.append(Placement(target, entries))
            continue
        good = next((e for e in reversed(entries) if e.state == "complete"), None)
        ours = [
            e
            for e in entries
            if e.release == record.release or any(ref.partition("@")[2] in mine for ref in e.images.values())
        ]
        if not ours:
            found.append(Placement(target, "not deployed"))
            continue
        entry = ours[-1]
        state: str = entry.state
        if state == "complete":
            state = "running" if entry is good else f"replaced by {good.release if good else '?'}"
        found.append(Placement(target, state, entry.at, entry.release, entry.p95_ms, entry.strategy))
    return tuple(found)


@dataclass(frozen=True)
class ModelRun:
    """A target that runs (or ran) a model's digest: the newest deployment ledger entry that put it there."""

    target: str
    state: str  # running, replaced by <release>, rolled-back, failed, in-progress, interrupted
    at: str
    release: str  # the release that entry deployed: this one, or another released with the same model


@dataclass(frozen=True)
class ModelRow:
    """One model of the release, what the registry holds signed for its digest, and where it runs."""

    name: str
    model: ModelRecord
    units: tuple[str, ...]  # the release's units released with this digest of it
    evidence: Evidence | None  # under trusted keys; None: not checked (``note`` says why)
    note: str = ""
    runs: tuple[ModelRun, ...] = ()

    @property
    def signed(self) -> bool | None:
        """A trusted signature on the digest; None where the registry was not asked."""
        return None if self.evidence is None else bool(self.evidence.signers)

    @property
    def signed_verdict(self) -> SignedVerdict | None:
        return None if self.evidence is None else self.evidence.verdicts.get("verify")

    @property
    def record_verdict(self) -> ModelVerifyVerdict | None:
        return self.model.verdicts.verify


def model_runs(model: ModelRecord, deployments: Mapping[str, Sequence[Deployment] | str]) -> tuple[ModelRun, ...]:
    """Per target whose ledger could be read: the newest entry that put ``model``'s digest there (by the
    ledger's ``models``, whatever the release was called), and whether it still runs there."""
    runs = []
    for target, entries in deployments.items():
        if isinstance(entries, str):
            continue  # "Where it runs" says the ledger is unreadable
        ours = [e for e in entries if any(ref.rpartition("@")[2] == model.digest for ref in e.models.values())]
        if not ours:
            continue
        good = next((e for e in reversed(entries) if e.state == "complete"), None)
        entry = ours[-1]
        state: str = entry.state
        if state == "complete":
            state = "running" if entry is good else f"replaced by {good.release if good else '?'}"
        runs.append(ModelRun(target, state, entry.at, entry.release))
    return tuple(runs)


def model_rows(
    record: ReleaseRecord,
    evidence: Mapping[str, Evidence | str],
    deployments: Mapping[str, Sequence[Deployment] | str],
) -> tuple[ModelRow, ...]:
    """Every model of the record, by name; ``evidence``: model -> what the registry holds, or why it was not read."""
    rows = []
    for name, model in sorted(record.models.items()):
        units = tuple(k for k, u in record.units.items() if u.models.get(name) == model.digest)
        proof = evidence.get(name, "not checked")
        checked = proof if isinstance(proof, Evidence) else None
        note = proof if isinstance(proof, str) else ""
        rows.append(ModelRow(name, model, units, checked, note, model_runs(model, deployments)))
    return tuple(rows)


@dataclass(frozen=True)
class ReleaseReport:
    record: ReleaseRecord
    verify: Mapping[str, VerifyTally]
    top_findings: tuple[TopFinding, ...]
    more_findings: int  # distinct findings beyond the top ones
    history: tuple[ChannelHistory, ...]
    history_note: str = ""  # why there is no history (the registry was not reachable)
    generated: str = ""
    profiles: tuple[str, ...] = ()
    placements: tuple[Placement, ...] = ()  # where it runs, per deploy target
    models: tuple[ModelRow, ...] = ()  # the release's models, by name

    def units_of(self, profile: str) -> list[tuple[str, UnitRecord]]:
        """The profile's units, parents before children (the record itself is sorted by name)."""
        units = self.record.units
        by_repository = {u.repository: k for k, u in units.items()}

        def depth(key: str, seen: frozenset[str] = frozenset()) -> int:
            parent = by_repository.get(units[key].parent.partition("@")[0])
            return 0 if parent is None or parent in seen else 1 + depth(parent, seen | {key})

        mine = [k for k, u in units.items() if u.profile == profile]
        return [(k, units[k]) for k in sorted(mine, key=lambda k: (depth(k), units[k].kind != "family", k))]

    def units_text(self, units: Sequence[str], shown: int = 3) -> str:
        if len(units) == len(self.record.units) > 1:
            return f"all {len(units)} units"
        return ", ".join(units[:shown]) + (f" and {len(units) - shown} more" if len(units) > shown else "")

    def canaried(self) -> list[tuple[str, CanaryVerdict]]:
        return [(k, v) for k, u in self.record.units.items() if (v := u.verdicts.canary) is not None]


def tally_verify(record: ReleaseRecord, document: Mapping[str, Any] | None) -> dict[str, VerifyTally]:
    """Per unit: verify.json's findings when it has the unit, else the record's verdict; absent: not verified."""
    by_unit: dict[str, list[Mapping[str, Any]]] = {}
    for finding in (document or {}).get("findings") or []:
        by_unit.setdefault(str(finding.get("unit")), []).append(finding)
    tallies = {}
    for key, unit in record.units.items():
        found = by_unit.get(key)
        if found:
            failed = tuple(
                f"{f.get('check')}: expected {f.get('expected')}, found {f.get('found')}"
                for f in found
                if f.get("status") == "fail"
            )
            passed = sum(f.get("status") == "pass" for f in found)
            tallies[key] = VerifyTally(passed, failed, sum(f.get("status") == "skip" for f in found))
        elif (verdict := unit.verdicts.verify) is not None:
            tallies[key] = VerifyTally(None, tuple(str(c) for c in verdict.failed))
    return tallies


def _order(top: TopFinding) -> tuple[int, bool, bool, int, str]:
    f = top.finding
    return (_RANK.get(f.severity, len(_RANK)), not top.blocking, not f.has_fix, -len(top.units), f.id)


def top_findings(
    record: ReleaseRecord, findings: Mapping[str, Sequence[ScanFinding]], limit: int = TOP_FINDINGS
) -> tuple[tuple[TopFinding, ...], int]:
    """Distinct findings of the release (one finding of several platforms' images is one), worst first, each
    with the units and the platforms that have it; and how many more."""
    units: dict[ScanFinding, list[str]] = {}
    platforms: dict[ScanFinding, list[str]] = {}
    for key in record.units:
        for finding in findings.get(key, ()):
            same = replace(finding, platform="")
            if key not in units.setdefault(same, []):
                units[same].append(key)
            if finding.platform and finding.platform not in platforms.setdefault(same, []):
                platforms[same].append(finding.platform)
    tops = []
    for finding, keys in units.items():
        verdicts = [v for k in keys if (v := record.units[k].verdicts.scan) is not None]
        tops.append(
            TopFinding(
                finding,
                tuple(keys),
                blocking=any(finding.id in v.blocking for v in verdicts),
                suppressed=any(finding.id in v.suppressed for v in verdicts),
                platforms=tuple(sorted(platforms.get(finding, ()))),
                multi_platform=any(len(record.units[k].platforms) > 1 for k in keys),
            )
        )
    tops.sort(key=_order)
    return tuple(tops[:limit]), max(0, len(tops) - limit)


def concerning(record: ReleaseRecord, entries: Iterable[Entry]) -> tuple[HistoryRow, ...]:
    """The ledger entries that moved a channel to this release's digests, or away from them."""
    mine = {key: unit.digest for key, unit in record.units.items()}
    rows = []
    for entry in entries:
        if entry.release == record.release:
            keys = tuple(k for k in entry.digests if k in mine)
            rows.append(HistoryRow(entry, "promoted" if entry.action == "promote" else "rolled back to", keys))
            continue
        replaced = tuple(
            k for k, before in entry.previous.items() if before == mine.get(k) and entry.digests.get(k) != before
        )
        if replaced:
            rows.append(HistoryRow(entry, f"replaced by {entry.release}", replaced))
    return tuple(rows)


@dataclass(frozen=True)
class FromRegistry:
    """What the report reads from the registry, each a string where it could not be read: ``ledgers``, channel
    -> its entries; ``deployments``, deploy target -> its deployment ledger's; ``model_evidence``, model -> its
    signatures and signed verdicts under the trusted keys. ``history_note``: why there is no history (the
    registry was not reachable)."""

    ledgers: Mapping[str, Sequence[Entry] | str] = field(default_factory=dict)
    history_note: str = ""
    deployments: Mapping[str, Sequence[Deployment] | str] = field(default_factory=dict)
    model_evidence: Mapping[str, Evidence | str] = field(default_factory=dict)


def build_report(
    record: ReleaseRecord,
    *,
    verify: Mapping[str, Any] | None,
    findings: Mapping[str, Sequence[ScanFinding]],
    from_registry: FromRegistry,
    generated: str = "",
) -> ReleaseReport:
    tops, more = top_findings(record, findings)
    history = tuple(
        ChannelHistory(channel, error=value)
        if isinstance(value, str)
        else ChannelHistory(channel, concerning(record, value), len(value))
        for channel, value in from_registry.ledgers.items()
    )
    profiles = tuple(dict.fromkeys(u.profile for u in record.units.values()))
    where = placements(record, from_registry.deployments)
    models = model_rows(record, from_registry.model_evidence, from_registry.deployments)
    note = from_registry.history_note
    return ReleaseReport(
        record, tally_verify(record, verify), tops, more, history, note, generated, profiles, where, models
    )


# --- inputs and outputs -----------------------------------------------------------------------


def load_verify(project: Path, release: str) -> dict[str, Any] | None:
    path = reports_dir(project, release) / "verify.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def load_findings(project: Path, record: ReleaseRecord) -> dict[str, list[ScanFinding]]:
    """Every unit's findings from its trivy JSON reports (each platform's image, and the Dockerfile), each
    naming the platform it was found in; none when it was not scanned."""
    found: dict[str, list[ScanFinding]] = {}
    for key, unit in record.units.items():
        directory = reports_dir(project, record.release) / "scan" / key
        reports = [(image_report_name(p, unit.platform), p) for p in unit.platforms or [unit.platform]]
        for name, platform in [*reports, ("dockerfile.trivy.json", "")]:
            try:
                data = json.loads((directory / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            found.setdefault(key, []).extend(parse_report(data, platform))
    return found


def write_report(project: Path, release: str, markdown: str, html: str) -> tuple[Path, Path]:
    directory = reports_dir(project, release)
    html_path, md_path = directory / "report.html", directory / "report.md"
    write_atomic(html_path, html)
    write_atomic(md_path, markdown)
    return html_path, md_path


def record_origin(record: ReleaseRecord) -> str:
    """``record schema 2, written by shipyard 0.1.0``: what the report says of the record itself."""
    return f"record schema {record.schema}, written by {record.written_by or 'an older shipyard'}"
