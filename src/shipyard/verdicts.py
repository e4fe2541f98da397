"""The gates' verdicts as the release record stores them: one typed class per gate, read by attribute. A
verdict round-trips the record's JSON: a newer shipyard's keys are kept in ``extra``, an older one's missing
keys are remembered in ``absent``, so a record rewritten by a gate changes only what that gate decided."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Self, TypeVar

GateName = Literal["verify", "scan", "canary"]
GATE_NAMES: tuple[GateName, ...] = ("verify", "scan", "canary")  # the order they run in (gate.py: GATES)
_OWN = ("extra", "absent")


@dataclass
class Stored:
    """A part of a verdict that round-trips: its known fields, and what it had beyond or short of them."""

    extra: dict[str, Any] = field(default_factory=dict, kw_only=True, repr=False)
    absent: frozenset[str] = field(default=frozenset(), kw_only=True, repr=False)
    nested: ClassVar[Mapping[str, type[Stored]]] = {}  # field -> the class of each value of that mapping field

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Read a verdict as the record's JSON has it; a value of another type is taken as it is."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a verdict is a mapping, not {type(data).__name__}")
        known = [f.name for f in fields(cls) if f.name not in _OWN]
        values = {name: cls._read(name, data[name]) for name in known if name in data}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra, absent=frozenset(n for n in known if n not in data))

    @classmethod
    def _read(cls, name: str, value: Any) -> Any:
        kind = cls.nested.get(name)
        if kind is not None and isinstance(value, Mapping):
            return {key: kind.from_dict(one) for key, one in value.items()}
        return value

    def to_dict(self) -> dict[str, Any]:
        """The verdict as the record's JSON holds it."""
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name not in (*_OWN, *self.absent)}
        return {**self.extra, **out}


def _plain(value: Any) -> Any:
    if isinstance(value, Stored):
        return value.to_dict()
    if isinstance(value, dict):
        return {key: _plain(one) for key, one in value.items()}
    if isinstance(value, list):
        return [_plain(one) for one in value]
    return value


@dataclass
class VerifyPlatform(Stored):
    """One platform's image of a unit that verify read: its checks' outcome."""

    passed: bool = False
    failed: list[str] = field(default_factory=list)

    @property
    def covers(self) -> bool:
        return self.passed


@dataclass
class VerifyVerdict(Stored):
    """verify's verdict on a unit: the checks that failed, and per platform whose image it read."""

    gate: ClassVar[GateName] = "verify"
    nested: ClassVar[Mapping[str, type[Stored]]] = {"platforms": VerifyPlatform}
    passed: bool = False
    failed: list[str] = field(default_factory=list)
    platforms: dict[str, VerifyPlatform] | None = None  # None: an older shipyard's, of the primary platform


@dataclass
class ModelVerifyVerdict(Stored):
    """verify's verdict on a model: each problem as ``check: what was found``."""

    gate: ClassVar[GateName] = "verify"
    passed: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass
class ScanPlatform(Stored):
    """What the scan of one platform's image found."""

    counts: dict[str, int] = field(default_factory=dict)
    secrets: int = 0
    blocking: list[str] = field(default_factory=list)

    @property
    def covers(self) -> bool:
        return True  # a scanned image is covered, whatever it found: the unit's verdict says if it passed


@dataclass
class ScanVerdict(Stored):
    """scan's verdict on a unit: counts by severity, the ids that block, were allowed or outlived their allowance."""

    gate: ClassVar[GateName] = "scan"
    nested: ClassVar[Mapping[str, type[Stored]]] = {"platforms": ScanPlatform}
    passed: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    secrets: int = 0
    misconfigs: int = 0
    blocking: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    expired_allowances: list[str] = field(default_factory=list)
    platforms: dict[str, ScanPlatform] | None = None
    vulnerabilities: str = "scanned"  # or "skipped" (--skip-vulnerabilities)


@dataclass
class CanaryPlatform(Stored):
    """One platform of a canaried unit: its own figures, or (``canaried`` False) why it could not run."""

    canaried: bool = True
    passed: bool = False
    reason: str = ""
    mode: str = ""
    latency: str = ""
    ready_s: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    error_rate: float | None = None
    requests: int = 0

    @classmethod
    def not_run(cls, reason: str) -> CanaryPlatform:
        """A platform the engine cannot run: recorded as ``{"canaried": false, "reason": ...}``."""
        rest = frozenset(f.name for f in fields(cls) if f.name not in (*_OWN, "canaried", "reason"))
        return cls(canaried=False, reason=reason, absent=rest)

    @property
    def covers(self) -> bool:
        return self.canaried and self.passed


@dataclass
class CanaryVerdict(Stored):
    """canary's verdict on a service: the first platform's figures at the top, each platform's in ``platforms``."""

    gate: ClassVar[GateName] = "canary"
    nested: ClassVar[Mapping[str, type[Stored]]] = {"platforms": CanaryPlatform}
    passed: bool = False
    reason: str = ""
    ready_s: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    slo_p95_ms: float | None = None
    error_rate: float | None = None
    requests: int = 0
    platform: str = ""
    mode: str = ""  # "native" or "emulated"
    latency: str = ""  # "judged against the SLO", or why it was not
    platforms: dict[str, CanaryPlatform] | None = None
    logs: list[str] = field(default_factory=list)  # the container's last lines, when it failed


Verdict = VerifyVerdict | ScanVerdict | CanaryVerdict
_UNIT_VERDICTS: dict[str, type[Verdict]] = {"verify": VerifyVerdict, "scan": ScanVerdict, "canary": CanaryVerdict}


def covered_platforms(verdict: Verdict, primary: str) -> list[str]:
    """The platforms of a unit a gate's verdict covered: each of its ``platforms`` verify read and passed,
    scan scanned, or canary ran and passed; a verdict without ``platforms`` (an older shipyard's) covers the
    unit's ``primary`` platform."""
    if verdict.platforms is None:
        return [primary]
    return [platform for platform, one in verdict.platforms.items() if one.covers]


@dataclass
class UnitVerdicts:
    """A unit's verdicts, one per gate it went through; a gate this shipyard does not know is kept in ``other``."""

    verify: VerifyVerdict | None = None
    scan: ScanVerdict | None = None
    canary: CanaryVerdict | None = None
    other: dict[str, Any] = field(default_factory=dict, repr=False)

    def of(self, gate: GateName) -> Verdict | None:
        found: Verdict | None = getattr(self, gate)
        return found

    def put(self, verdict: Verdict) -> None:
        setattr(self, verdict.gate, verdict)

    def __bool__(self) -> bool:
        return any(self.of(gate) is not None for gate in GATE_NAMES) or bool(self.other)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UnitVerdicts:
        found = cls(other={k: v for k, v in data.items() if k not in _UNIT_VERDICTS})
        for gate, kind in _UNIT_VERDICTS.items():
            if gate in data:
                found.put(kind.from_dict(data[gate]))
        return found

    def to_dict(self) -> dict[str, Any]:
        mine: dict[str, Any] = {gate: v.to_dict() for gate in GATE_NAMES if (v := self.of(gate)) is not None}
        return {**self.other, **mine}


@dataclass
class ModelVerdicts:
    """A model's verdicts: it is only verified (its files are data: nothing to scan or run)."""

    verify: ModelVerifyVerdict | None = None
    other: dict[str, Any] = field(default_factory=dict, repr=False)

    def __bool__(self) -> bool:
        return self.verify is not None or bool(self.other)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelVerdicts:
        verify = data.get("verify")
        found = cls(other={k: v for k, v in data.items() if k != "verify"})
        found.verify = None if verify is None else ModelVerifyVerdict.from_dict(verify)
        return found

    def to_dict(self) -> dict[str, Any]:
        mine = {} if self.verify is None else {"verify": self.verify.to_dict()}
        return {**self.other, **mine}


Verdicts = TypeVar("Verdicts", UnitVerdicts, ModelVerdicts)


def read_verdicts(raw: object, kind: type[Verdicts]) -> Verdicts:
    """A record's ``verdicts`` field as it was given: already typed, or the JSON's mapping of gate -> verdict."""
    if isinstance(raw, kind):
        return raw
    if isinstance(raw, Mapping):
        return kind.from_dict(raw)
    raise TypeError(f"verdicts: expected a mapping of gate -> verdict, got {type(raw).__name__}")
