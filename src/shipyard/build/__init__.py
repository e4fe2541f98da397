"""Everything up to the pushed digest: plan, render, buildx, reuse, attestations."""

import os


def default_jobs() -> int:
    """Units built at once by default: twice the cores. A build is not on a core all its life: its
    export, cache export and push wait on the registry, and the next builds use that time (on 2 cores,
    a cold build of 18 units took 62 s with 4 at once against 70 s with 2; bake's one solve: 55 s)."""
    return 2 * (os.cpu_count() or 1)
