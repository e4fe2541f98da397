"""Canary: run the service images of one profile as hardened containers and check real inference, on every
platform of a unit the engine can run (natively, or under QEMU with the SLO not judged). ``CanaryGate`` is
the canary as a member of the ``Gate`` shape (gate.py): ``run`` canaries one profile's services and stores
the typed verdicts in the record, ``conclude`` raises ``CanaryFailed``. The hardening and the emulated
platforms: the architecture page, "The canary"."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx

from ...errors import CanaryFailed, ConfigError, EngineError
from ...events import Emit, Event
from ...record import ReleaseRecord, UnitRecord, load_record, write_atomic
from ...verdicts import CanaryPlatform, CanaryVerdict, GateName
from ..engine import Endpoint, connect, create_container, endpoint, gpu_device_requests, require_nvidia_runtime
from ..model_volumes import PlacedModel, ensure_models, released_models
from .probes import Crashed, NotReady, golden_of, http_health, judge, send_golden, wait_until_ready

LABEL = "io.shipyard.canary"
PLATFORM_LABEL = "io.shipyard.platform"
BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")
EMULATED_READY_FACTOR = 5  # an emulated platform's readiness deadline, in multiples of the service's
# docker info's Architecture (uname -m) -> the OCI architecture, and an OCI architecture -> QEMU's name for it
ARCH_OF_MACHINE = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
                   "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip
QEMU_OF_ARCH = {"amd64": "x86_64", "arm64": "aarch64", "arm": "arm", "ppc64le": "ppc64le", "s390x": "s390x",
                "riscv64": "riscv64"}  # fmt: skip
OWNER_LABEL = "io.shipyard.canary.owner"  # host:pid of the shipyard process that started it
STALE_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class Engine:
    """The engine the canary runs on: its Docker SDK client, and where its published ports are bound and
    reached from here."""

    client: Any
    where: Endpoint


@dataclass(frozen=True)
class Candidate:
    """A service of a release as the canary runs it: the unit's key and record, and the release (both name
    its container's labels)."""

    key: str
    unit: UnitRecord
    release: str


@dataclass(frozen=True)
class HowToRun:
    """How the engine runs one platform's image: ``native``, ``emulated`` (under ``emulator``), or not at all
    (``mode`` "", ``reason`` says why)."""

    platform: str
    mode: str
    reason: str = ""
    emulator: str = ""


def how_to_run(platform: str, machine: str, *, local: bool, binfmt: Path = BINFMT_MISC) -> HowToRun:
    """``machine``: the engine's architecture (``docker info``); ``local``: the engine runs on this machine,
    so its binfmt_misc is the one under ``binfmt``."""
    os_name, _, arch = platform.partition("/")
    arch = arch.split("/")[0]
    native = ARCH_OF_MACHINE.get(machine, machine)
    if os_name == "linux" and arch == native:
        return HowToRun(platform, "native")
    qemu = QEMU_OF_ARCH.get(arch)
    if os_name != "linux" or qemu is None:
        return HowToRun(platform, "", f"the engine ({machine}) has no way to run {platform}")
    if not local:
        return HowToRun(platform, "", f"the engine ({machine}) is on another machine: whether it emulates "
                        f"{platform} cannot be read from here")  # fmt: skip
    entry = binfmt / f"qemu-{qemu}"
    try:
        enabled = entry.read_text().splitlines()[:1] == ["enabled"]
    except OSError:
        hint = f"register QEMU with binfmt_misc: docker run --privileged --rm tonistiigi/binfmt --install {arch}"
        return HowToRun(platform, "", f"the engine ({machine}) cannot run {platform}: no {entry} ({hint})")
    if not enabled:
        return HowToRun(platform, "", f"the engine ({machine}) cannot run {platform}: {entry} is disabled")
    return HowToRun(platform, "emulated", emulator=f"qemu-{qemu}")


def figures(verdict: CanaryVerdict) -> CanaryPlatform:
    """One platform's canary as its entry of the unit's ``platforms``: its own figures."""
    return CanaryPlatform(True, verdict.passed, verdict.reason, verdict.mode, verdict.latency, verdict.ready_s,
                          verdict.p50_ms, verdict.p95_ms, verdict.error_rate, verdict.requests)  # fmt: skip


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _is_leftover(labels: dict[str, str], created: str, now: datetime) -> bool:
    """A container of a run that is gone: its process on this host is dead, or it is older than
    STALE_AFTER (a run on another host). A canary running at the same time is left alone."""
    if OWNER_LABEL not in labels:
        return True  # made by a shipyard before owners were recorded
    host, _, pid = labels[OWNER_LABEL].rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    try:
        started = datetime.fromisoformat(created[:26].rstrip("Z")).replace(tzinfo=UTC)
    except ValueError:
        return True
    return now - started > STALE_AFTER


def remove_leftovers(client: Any, emit: Emit) -> int:
    now = datetime.now(UTC)
    leftovers = [
        c
        for c in client.containers.list(all=True, filters={"label": LABEL})
        if _is_leftover(c.labels, c.attrs.get("Created", ""), now)
    ]
    for container in leftovers:
        container.remove(force=True)
    if leftovers:
        emit(Event("canary.cleanup", f"removed {len(leftovers)} canary container(s) left by an earlier run"))
    return len(leftovers)


def _memory_bytes(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    try:
        return int(float(text[:-1]) * units[text[-1].lower()]) if text[-1].lower() in units else int(text)
    except (ValueError, IndexError):
        raise ConfigError(f"canary.memory: expected e.g. 512m or 1g, got {text!r}") from None


def _start(client: Any, key: str, image: str, **options: Any) -> Any:
    """Pull if needed, create, start; the engine's refusal (pull, network, limits) as one line, and a
    container that was created but could not start is removed at once."""
    import docker

    container = None
    try:
        container = create_container(client, image, **options)
        container.start()
        return container
    except docker.errors.APIError as exc:
        if container is not None:
            container.remove(force=True)
        explanation = str(exc.explanation or exc).splitlines()[0][:300]
        raise EngineError(f"canary {key}: the engine could not start {image}: {explanation}") from None
    except BaseException:  # Ctrl-C between create and start: the container must not outlive us
        if container is not None:
            container.remove(force=True)
        raise


def remove_own(client: Any) -> int:
    """Remove this process's canary containers (on the way out, whatever happened)."""
    own = client.containers.list(all=True, filters={"label": f"{OWNER_LABEL}={owner()}"})
    for container in own:
        container.remove(force=True)
    return len(own)


@contextmanager
def running(
    engine: Engine,
    candidate: Candidate,
    *,
    gpu: bool = False,
    models: Sequence[PlacedModel] = (),
    platform: str = "",
) -> Iterator[tuple[Any, str]]:
    """The unit's container, hardened, removed on the way out whatever happens; ``gpu``: with every
    NVIDIA GPU of the engine's host; ``models``: their volumes (filled already) read-only where it reads them;
    ``platform``: the image of that platform in the unit's index (the engine picks it)."""
    key, unit = candidate.key, candidate.unit
    service, limits = unit.expect["service"], unit.expect["canary"]
    port = f"{service['port']}/tcp"
    extra: dict[str, Any] = {"device_requests": gpu_device_requests()} if gpu else {}
    labels = {LABEL: candidate.release, "io.shipyard.unit": key, OWNER_LABEL: owner()}
    if platform:
        extra["platform"] = platform
        labels[PLATFORM_LABEL] = platform
    if models:
        extra["volumes"] = {m.volume: {"bind": m.mount, "mode": "ro"} for m in models}
        extra["environment"] = {"MODEL_CACHE_DIR": models[0].mount.rsplit("/", 1)[0] or "/"}
    container = _start(
        engine.client,
        key,
        unit.ref,
        read_only=True,
        tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        mem_limit=_memory_bytes(limits["memory"]),
        nano_cpus=int(float(limits["cpus"]) * 1e9),
        pids_limit=int(limits["pids"]),
        ports={port: (engine.where.bind, None)},
        labels=labels,
        **extra,
    )
    try:
        container.reload()
        host_port = container.ports[port][0]["HostPort"]
        yield container, f"http://{engine.where.probe_host}:{host_port}"
    finally:
        container.remove(force=True)


def _ready_check(container: Any, base_url: str, health_path: str, client: httpx.Client) -> Any:
    def check() -> None:
        container.reload()
        state = container.attrs["State"]
        if state["Status"] in ("exited", "dead"):
            raise Crashed(int(state.get("ExitCode", -1)))
        if (state.get("Health") or {}).get("Status") != "healthy":
            raise NotReady("docker health: " + str((state.get("Health") or {}).get("Status")))
        http_health(base_url, health_path, client)

    return check


def canary_unit(
    engine: Engine,
    candidate: Candidate,
    *,
    gpu: bool = False,
    models: Sequence[PlacedModel] = (),
    run: HowToRun | None = None,
) -> CanaryVerdict:
    """One platform's image of the unit (``run``; None: the unit's own platform, as the engine picks it)."""
    unit = candidate.unit
    service, limits = unit.expect["service"], unit.expect["canary"]
    golden = golden_of(service)
    slo_ms = float(service["slo_p95_ms"])
    emulated = run is not None and run.mode == "emulated"
    ready_timeout = float(service["ready_timeout_s"]) * (EMULATED_READY_FACTOR if emulated else 1)
    verdict = CanaryVerdict(passed=False, slo_p95_ms=slo_ms, platform=run.platform if run else unit.platform,
                            mode=run.mode if run else "native", latency="judged against the SLO")  # fmt: skip
    if emulated:
        verdict.latency = (f"skipped: emulated ({run.emulator if run else ''}), latency is not the hardware's; "
                           f"ready deadline x{EMULATED_READY_FACTOR}")  # fmt: skip
    platform = run.platform if run is not None and unit.platforms else ""
    started = running(engine, candidate, gpu=gpu, models=models, platform=platform)
    with started as (container, base_url), httpx.Client() as http:
        try:
            verdict.ready_s = round(
                wait_until_ready(_ready_check(container, base_url, service["health"], http), ready_timeout), 2
            )
        except NotReady as exc:
            verdict.reason = f"not healthy by the deadline ({ready_timeout:g}s): {exc}"
        except Crashed as exc:
            verdict.reason = f"crashed (exit code {exc.exit_code})"
        if not verdict.reason:
            load = send_golden(base_url, golden, int(limits["requests"]))
            judged = judge(load, golden, float("inf") if emulated else slo_ms)
            verdict.requests, verdict.error_rate = judged.requests, judged.error_rate
            verdict.p50_ms, verdict.p95_ms = judged.p50_ms, judged.p95_ms
            verdict.reason, verdict.passed = judged.reason, not judged.reason
        if not verdict.passed:
            verdict.logs = container.logs(tail=20).decode(errors="replace").splitlines()
    return verdict


def canary_platforms(
    engine: Engine,
    candidate: Candidate,
    runs: Callable[[str], HowToRun],
    *,
    gpu: bool = False,
    models: Sequence[PlacedModel] = (),
) -> CanaryVerdict:
    """Every platform of the unit the engine can run (``runs``: how it runs one), one after the other; the
    verdict passes when each canaried platform passed, and at least one could be canaried."""
    unit = candidate.unit
    platforms = unit.platforms or [unit.platform]
    results: dict[str, CanaryVerdict] = {}
    skipped: dict[str, str] = {}
    for platform in platforms:
        run = runs(platform)
        if not run.mode:
            skipped[platform] = run.reason
            continue
        results[platform] = canary_unit(engine, candidate, gpu=gpu, models=models, run=run)
    if not results:
        reasons = "; ".join(f"{p}: {why}" for p, why in skipped.items())
        verdict = CanaryVerdict(passed=False, reason=f"no platform of the unit can run here ({reasons})")
    else:
        failed = [v for v in results.values() if not v.passed]
        verdict = replace(failed[0] if failed else next(iter(results.values())))
        verdict.passed = not failed
        if failed and len(platforms) > 1:
            verdict.reason = f"{failed[0].platform}: {failed[0].reason}"
    verdict.platforms = {p: figures(results[p]) if p in results else CanaryPlatform.not_run(skipped[p])
                         for p in platforms}  # fmt: skip
    return verdict


def _canary_units(
    engine: Engine,
    record: ReleaseRecord,
    units: dict[str, UnitRecord],
    emit: Emit,
    *,
    gpu: bool = False,
    fetch_image: Callable[[], str] | None = None,
) -> dict[str, CanaryVerdict]:
    models = {key: released_models(record, key) for key in units}
    wanted = [m for placed in models.values() for m in placed]
    if wanted:  # every model on the canary's engine first, each file's digest checked, as a deploy does
        if fetch_image is None:
            raise ConfigError(f"canary: release {record.release} has models, and no image to fill their volumes with")
        ensure_models(engine.client, wanted, fetch_image(), emit, "canary")
    verdicts = {}
    runs = _platform_runner(engine)
    for key, unit in units.items():
        started = time.monotonic()
        emit(Event("canary.started", f"{key}: starting {unit.ref[:90]}", unit=key))
        verdict = canary_platforms(engine, Candidate(key, unit, record.release), runs, gpu=gpu, models=models[key])
        outcome = "ok" if verdict.passed else f"FAIL {verdict.reason}"
        emit(
            Event(
                "canary.unit",
                f"{key}: {outcome} (ready {verdict.ready_s}s, p50 {verdict.p50_ms} ms, "
                f"p95 {verdict.p95_ms} ms, {time.monotonic() - started:.1f}s to verdict){_platforms_told(verdict)}",
                unit=key,
                data={"platforms": {p: one.to_dict() for p, one in (verdict.platforms or {}).items()}},
            )
        )
        verdicts[key] = verdict
    return verdicts


def _platform_runner(engine: Engine) -> Callable[[str], HowToRun]:
    """How the engine runs each platform; ``docker info`` asked once, when a first platform is asked about."""
    machine: list[str] = []

    def runs(platform: str) -> HowToRun:
        if not machine:
            machine.append(str(engine.client.info().get("Architecture") or ""))
        return how_to_run(platform, machine[0], local=not engine.where.is_remote)

    return runs


def _platforms_told(verdict: CanaryVerdict) -> str:
    """``; linux/amd64 native ok, linux/arm64 emulated ok (latency skipped: emulated …)`` for more than one
    platform, or for a platform not run natively; "" for a unit canaried as it always was."""
    listed = verdict.platforms or {}
    if len(listed) < 2 and verdict.mode == "native":
        return ""
    parts = []
    for platform, shown in listed.items():
        if not shown.canaried:
            parts.append(f"{platform} not canaried: {shown.reason}")
            continue
        outcome = "ok" if shown.passed else "FAIL"
        latency = "" if shown.mode == "native" else f" (latency {shown.latency})"
        parts.append(f"{platform} {shown.mode} {outcome}{latency}")
    return "; " + ", ".join(parts)


@dataclass(frozen=True)
class CanaryReport:
    """The canary of one profile of a release: each service's verdict (its logs whole), by unit."""

    release: str
    profile: str
    units: dict[str, CanaryVerdict]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.units.values())


@dataclass(frozen=True)
class CanaryGate:
    """The canary as a gate: the services of ``profile`` (None: the release's first). ``gpu_profiles``: the
    project's profiles whose hardware has a GPU (the record does not say); their containers get the GPUs.
    ``fetch_image``: the image (by digest) that fills the release's model volumes, asked only when it has models."""

    name: ClassVar[GateName] = "canary"
    profile: str | None = None
    gpu_profiles: Collection[str] = ()
    fetch_image: Callable[[], str] | None = None

    def policy(self) -> dict[str, Any]:
        probes = "health, golden request, p95 against the SLO"
        return {"profile": self.profile or "first in the release", "probes": probes}

    def model_policy(self) -> dict[str, Any] | None:
        return None  # a model is not run on its own: its services are

    def run(self, record_path: Path, emit: Emit) -> CanaryReport:
        """Canary every service of the profile and store the verdicts in the record."""
        record = load_record(record_path)
        profiles = list(dict.fromkeys(u.profile for u in record.units.values()))
        chosen = self.profile or (profiles[0] if profiles else "")
        if chosen not in profiles:
            raise ConfigError(
                f"--profile: {chosen!r} is not in release {record.release} (it has {', '.join(profiles)})"
            )
        units = {k: u for k, u in record.units.items() if u.profile == chosen and u.kind == "service"}
        if not units:
            raise ConfigError(f"release {record.release} has no service of profile {chosen!r} to canary")
        missing = [k for k, u in units.items() if "service" not in u.expect]
        if missing:
            raise ConfigError(
                f"{record_path}: {', '.join(missing)}: no service probes in the record (built by an older "
                f"shipyard); rebuild the release"
            )
        where = endpoint()
        client = connect(where)
        gpu = chosen in self.gpu_profiles
        if gpu:  # before any container is removed or started: the engine cannot run this canary at all
            require_nvidia_runtime(client, f"canary {chosen} (a GPU profile)", where.url)
        if where.is_remote:
            emit(Event("canary.engine", f"engine {where.url}: probing the services at {where.probe_host}"))
        remove_leftovers(client, emit)
        try:
            results = _canary_units(Engine(client, where), record, units, emit, gpu=gpu, fetch_image=self.fetch_image)
        finally:
            remove_own(client)  # one interrupted mid-request (create answered after Ctrl-C) included
        for key, verdict in results.items():
            record.units[key].verdicts.canary = replace(verdict, logs=verdict.logs[-20:])  # the last lines
        write_atomic(record_path, record.to_json())
        return CanaryReport(record.release, chosen, results)

    def conclude(self, report: CanaryReport, emit: Emit) -> CanaryReport:
        """Raise when any service failed, naming each with its reason."""
        failed = {k: v for k, v in report.units.items() if not v.passed}
        if failed:
            raise CanaryFailed(
                f"canary: {len(failed)} of {len(report.units)} service(s) failed on {report.profile}: "
                + "; ".join(f"{k}: {v.reason}" for k, v in failed.items())[:400]
            )
        return report
