"""Environment-driven settings and the /health payload (no server imports here)."""

from __future__ import annotations

import os
from typing import Any

# One asyncio process serves every connection. UVICORN_WORKERS is accepted for uniformity with the
# other services but has no effect: the effective number of workers is always 1.
WORKERS = 1


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


def health_payload(service: str) -> dict[str, Any]:
    return {
        "status": "ok",
        "service": service,
        "profile": os.environ.get("SHIPYARD_PROFILE") or "unknown",
        "accelerator": os.environ.get("SHIPYARD_HARDWARE_GPU") or "none",
        "cuda_arch": os.environ.get("TORCH_CUDA_ARCH_LIST") or None,
        "workers": WORKERS,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS") or None,
    }
