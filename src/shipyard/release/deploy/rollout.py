"""A rollout: every target of the catalog to a channel, canary targets first, then the rest in batches.

Each target's plan (and its checks: secrets, engine, GPU runtime) is made before any target changes,
so a missing secret or a dead engine anywhere refuses the whole rollout up front. Canary targets go
one by one; the others in batches of ``batch_size`` at a time. The first failure (that target already
rolled back by its deploy) stops the rollout: later targets are not reached and keep what they run.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ...config.targets import Target
from .deploy import DeployOutcome, TargetDeploy


def batches(targets: Sequence[Target], batch_size: int) -> list[list[Target]]:
    """Canary targets one per batch, in catalog order, then the others ``batch_size`` at a time.

    >>> a, b, c = Target("a", "cpu", "unix:///s"), Target("b", "cpu", "unix:///s", canary=True), Target("c", "cpu", "unix:///s")
    >>> [[t.name for t in batch] for batch in batches([a, b, c], 2)]
    [['b'], ['a', 'c']]
    """
    rest = [t for t in targets if not t.canary]
    return [[t] for t in targets if t.canary] + [rest[i : i + batch_size] for i in range(0, len(rest), batch_size)]


def roll_out(deploys: Sequence[TargetDeploy], batch_size: int) -> list[DeployOutcome]:
    """Apply each planned deploy in rollout order; one outcome per target, ``not reached`` after a failure."""
    by_name = {d.target.name: d for d in deploys}
    order = batches([d.target for d in deploys], batch_size)
    outcomes: list[DeployOutcome] = []
    for i, batch in enumerate(order):
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            done = list(pool.map(lambda t: by_name[t.name].apply(), batch))
        outcomes += done
        if any(o.failed for o in done):
            for later in order[i + 1 :]:
                for target in later:
                    deploy = by_name[target.name]
                    outcomes.append(DeployOutcome(target.name, deploy.before, deploy.before, "not reached"))
            break
    return outcomes
