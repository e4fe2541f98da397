"""A release's models on an engine: one Docker volume per model digest, filled (every file checked) by a
one-shot container before anything starts, and never removed by a deploy."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..build.base import LocalBases
from ..config.models import DEFAULT_MODEL_DIR
from ..config.project import cache_dir
from ..errors import ConfigError, EngineError
from ..events import Emit, Event
from ..oci.client import RegistryClient
from ..record import ReleaseRecord
from ..runner import Runner
from .engine import create_container

FETCH_BASE = "debian-bookworm-python"  # the local base every Python image starts from: python3, nothing else
MODEL_LABEL = "io.shipyard.model"
DIGEST_LABEL = "io.shipyard.model.digest"
FILL_LABEL = "io.shipyard.model-fill"
FILL_TIMEOUT_S = 3600  # a multi-GB model over a slow link


@dataclass(frozen=True)
class PlacedModel:
    """One model a service runs with: its artifact by digest and where the container reads it."""

    name: str
    ref: str  # host/namespace/models/name@sha256:…
    mount: str  # <model_dir>/<name>, read-only in the service's container

    @property
    def digest(self) -> str:
        return self.ref.rpartition("@")[2]

    @property
    def volume(self) -> str:
        return volume_name(self.name, self.digest)


def volume_name(name: str, digest: str) -> str:
    return f"shipyard-model-{name}-{digest.removeprefix('sha256:')[:12]}"


def released_models(record: ReleaseRecord, key: str) -> tuple[PlacedModel, ...]:
    """The models the unit ``key`` was released with, where its container reads them (``<model_dir>/<name>``)."""
    unit = record.units[key]
    model_dir = str((unit.expect.get("service") or {}).get("model_dir", DEFAULT_MODEL_DIR))
    found = []
    for name, digest in unit.models.items():
        model = record.models.get(name)
        if model is None or model.digest != digest:
            raise ConfigError(f"release {record.release}: {key} was released with model {name} {digest[:19]}, "
                              f"which the record's models do not hold (was the record edited?)")  # fmt: skip
        found.append(PlacedModel(name, model.ref, f"{model_dir.rstrip('/')}/{name}"))
    return tuple(found)


def model_fetch_image(registry: RegistryClient, runner: Runner, emit: Emit) -> str:
    """The fill container's image by digest: the local Python base, built and pushed here if missing."""
    return LocalBases(registry.target, registry, runner, cache_dir(), emit).ensure(FETCH_BASE)


def _program() -> str:
    return (resources.files("shipyard") / "resources" / "model_fetch.py").read_text(encoding="utf-8")


def ensure_models(client: Any, models: Sequence[PlacedModel], image: str, emit: Emit, who: str) -> list[dict[str, Any]]:
    """Every model's volume on the engine of ``client``, filled and checked; what the fill did per model.

    One container fills them all, one after another (the time is the bytes, not the models). A model whose
    bytes do not match its digests raises EngineError naming the model and the file; its volume is left
    partial (the next fill starts it over) and no service has it mounted."""
    wanted = list({m.volume: m for m in models}.values())
    if not wanted:
        return []
    mounts = {}
    for index, model in enumerate(wanted):
        _volume(client, model)
        mounts[model.volume] = {"bind": f"/fill/{index}", "mode": "rw"}
    jobs = [
        {"name": m.name, "registry": m.ref.split("/", 1)[0], "repository": m.ref.split("/", 1)[1].rpartition("@")[0],
         "digest": m.digest, "mount": f"/fill/{i}"}
        for i, m in enumerate(wanted)
    ]  # fmt: skip
    started = time.monotonic()
    output, error, code = _run(client, image, jobs, mounts, who)
    if code != 0:
        line = next((x for x in error.splitlines() if x.startswith("error: ")), error.strip()[-300:] or f"exit {code}")
        raise EngineError(f"{who}: models: {line.removeprefix('error: ')}")
    done = [json.loads(x) for x in output.splitlines() if x.startswith("{")]
    for result in done:
        model = next(m for m in wanted if m.name == result["name"])
        if result["state"] == "present":
            what = f"already in volume {model.volume} (nothing downloaded)"
        else:
            what = (
                f"filled volume {model.volume}: {result['files']} files, {result['bytes']} bytes, every digest checked"
            )
        emit(Event("model.placed", f"{who}: model {model.name} {model.digest[:19]} {what}", data=result))
    emit(Event("model.ready", f"{who}: {len(done)} model(s) ready ({time.monotonic() - started:.1f}s)"))
    return done


def _volume(client: Any, model: PlacedModel) -> None:
    import docker

    try:
        client.volumes.get(model.volume)
    except docker.errors.NotFound:
        client.volumes.create(model.volume, labels={MODEL_LABEL: model.name, DIGEST_LABEL: model.digest})


def _run(client: Any, image: str, jobs: list[dict[str, str]], mounts: dict[str, Any], who: str) -> tuple[str, str, int]:
    """Run the fill container to its end: its standard output, standard error and exit status."""
    import docker

    options: dict[str, Any] = {
        "entrypoint": ["python3", "-c", _program()],
        "command": [],
        "environment": {"MODELS_TO_FILL": json.dumps(jobs)},
        "network_mode": "host",  # the registry as the engine's host reaches it (a loopback registry too)
        "user": "0:0",  # owns the fresh volumes; every capability dropped, the image's root read-only
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "volumes": mounts,
        "labels": {FILL_LABEL: "1"},
        "detach": True,
    }
    container = None
    try:
        container = create_container(client, image, **options)
        container.start()
        code = int(container.wait(timeout=FILL_TIMEOUT_S).get("StatusCode", -1))
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        return out, err, code
    except docker.errors.APIError as exc:
        explanation = str(exc.explanation or exc).splitlines()[0][:300]
        raise EngineError(
            f"{who}: models: the engine could not run the fill container ({image}): {explanation}"
        ) from None
    finally:
        if container is not None:
            container.remove(force=True)
