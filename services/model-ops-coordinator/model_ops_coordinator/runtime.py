"""Environment-driven settings and the /health payload (no web framework imports here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

DEFAULT_MODEL_CACHE_DIR = "/models"  # the image's MODEL_CACHE_DIR, where a deploy mounts the models


def env_port(default: int) -> int:
    """TCP port from env PORT, or ``default`` when unset/empty (0 = any free port, for tests)."""
    raw = os.environ.get("PORT", "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"PORT must be an integer, got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise SystemExit(f"PORT must be 0-65535, got {port}")
    return port


def model_dir(name: str) -> Path:
    """Where model ``name`` is: ``$MODEL_CACHE_DIR/<name>``, as a deploy mounts each of a service's models."""
    return Path(os.environ.get("MODEL_CACHE_DIR", "").strip() or DEFAULT_MODEL_CACHE_DIR) / name


def effective_workers() -> int:
    """UVICORN_WORKERS (default 1; invalid or < 1 means 1), capped at os.cpu_count()."""
    try:
        requested = int(os.environ.get("UVICORN_WORKERS", "1").strip() or "1")
    except ValueError:
        requested = 1
    return max(1, min(requested, os.cpu_count() or 1))


def health_payload(service: str) -> dict[str, Any]:
    return {
        "status": "ok",
        "service": service,
        "profile": os.environ.get("SHIPYARD_PROFILE") or "unknown",
        "accelerator": os.environ.get("SHIPYARD_HARDWARE_GPU") or "none",
        "cuda_arch": os.environ.get("TORCH_CUDA_ARCH_LIST") or None,
        "workers": effective_workers(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS") or None,
    }
