"""Concurrent promotions of one channel against the real registry, and a ledger rewritten in the registry.

Two ``shipyard promote`` processes at once, one per release, for many rounds: after each, the ledger's
chain and signatures verify, it grew by exactly the entries of the promotions that succeeded (none
lost), a failed one failed with the clean message, and every channel tag of the units names ONE
release's digests, as the registry itself answers. Once from one machine (one state directory: the
host lock serializes them) and once as two machines (a state directory each, the same key pair: only
the registry-side detection stands between them). Forced (``--force --reason``), so that no gate
verdict is needed.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.config.keys import development_key, machine_state_dir
from shipyard.oci.artifacts import push_document
from shipyard.oci.client import RegistryClient
from shipyard.record import ReleaseRecord, save_record
from shipyard.release.channels.ledger import LEDGER_TYPE, ledger_repository, load_ledger
from tests.integration.conftest import push_variant, registry_digest, shipyard

ROUNDS = 20
MOVED = "channel moved during the promotion; run it again"
NAMESPACE = "shipyard-it"


@pytest.fixture(scope="module")
def releases(
    gated, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, ReleaseRecord, ReleaseRecord, ReleaseRecord]:  # type: ignore[no-untyped-def]
    """The session's release (its cpu units) and two more of the same units with other digests (each image
    plus a label, pushed to the same repositories), so that all three move the same channel tags."""
    root, record = gated
    first = replace(record, units={k: u for k, u in record.units.items() if u.profile == "cpu"})
    context = tmp_path_factory.mktemp("variant")

    def variant(name: str) -> ReleaseRecord:
        units = {}
        for key, unit in first.units.items():
            tag = f"{unit.tag}-{name}"
            digest = push_variant(unit.ref, [f"LABEL org.example.variant={name}"], context, f"{unit.repository}:{tag}")
            units[key] = replace(unit, tag=tag, digest=digest, verdicts={})
        made = replace(first, release=f"{first.release}-{name}", units=units)
        save_record(root, made)
        return made

    second, reset = variant("concurrency"), variant("reset")
    digests = [{u.digest for u in r.units.values()} for r in (first, second, reset)]
    assert not digests[0] & digests[1] and not digests[0] & digests[2] and not digests[1] & digests[2]
    return root, first, second, reset


def promote(root: Path, release: str, channel: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = shipyard(
        *("--project", str(root), "promote", release, "--channel", channel, "--profile", "cpu"),
        *("--force", "--reason", "concurrency-test", "--json"),
        env=env,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


def channel_digests(record: ReleaseRecord, channel: str) -> dict[str, str | None]:
    return {key: registry_digest(unit.repository, channel) for key, unit in record.units.items()}


def two_machines(tmp_path: Path) -> list[dict[str, str]]:
    """Two state directories (two machines' locks) holding this machine's development key pair."""
    development_key(machine_state_dir())
    envs = []
    for name in ("machine-a", "machine-b"):
        shutil.copytree(machine_state_dir() / "keys", tmp_path / name / "keys")
        # the registry is on loopback, where no settle is the default: as two machines reaching it
        envs.append({"SHIPYARD_STATE_DIR": str(tmp_path / name), "SHIPYARD_LEDGER_SETTLE_S": "1"})
    return envs


@pytest.mark.parametrize("machines", ["one machine", "two machines"])
def test_concurrent_promotions_lose_nothing(releases, machines: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each round: the channel set to a third release, then both releases promoted at once, so that each
    promotion has tags to move and an entry to write."""
    root, first, second, reset = releases
    channel = f"conc-{uuid.uuid4().hex[:8]}"
    envs = two_machines(tmp_path) if machines == "two machines" else [{}, {}]
    figures = {"promotions": 0, "succeeded": 0, "failed cleanly": 0, "lost": 0}
    reasons: Counter[str] = Counter()  # why the failed ones stopped (the message's parenthesis)
    expected = [{k: u.digest for k, u in r.units.items()} for r in (first, second)]
    entries: list[dict[str, object]] = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        for round_ in range(1, ROUNDS + 1):
            assert promote(root, reset.release, channel)[0] == 0
            before = len(entries) + 1
            runs = list(
                pool.map(lambda r: promote(root, r[0].release, channel, r[1]), [(first, envs[0]), (second, envs[1])])
            )
            history = shipyard("--project", str(root), "history", "--channel", channel, "--json")
            entries = json.loads(history.stdout)["entries"]
            signatures = {e["signature"] for e in entries}
            succeeded = 0
            for code, out, err in runs:
                figures["promotions"] += 1
                if code == 0:
                    succeeded += 1
                    figures["lost"] += json.loads(out)["signature"] not in signatures
                else:
                    assert code == 13 and MOVED in err and "no tag moved" in err, f"round {round_}: exit {code}: {err}"
                    figures["failed cleanly"] += 1
                    reasons[err.split(MOVED, 1)[1].strip(" ()\n")] += 1
            figures["succeeded"] += succeeded
            assert figures["lost"] == 0, f"round {round_}: an entry of a promotion that succeeded is gone: {figures}"
            assert len(entries) == before + succeeded, f"round {round_}: {len(entries)} entries, {figures}"
            assert all(e["state"] == "complete" for e in entries), f"round {round_}: an entry stays in-progress"
            verified = shipyard("--project", str(root), "history", "--channel", channel, "--verify", check=False)
            assert verified.returncode == 0, f"round {round_}: {verified.stderr}"
            assert f"{channel}: {len(entries)} entries, chain and signatures verify" in verified.stdout
            tags = channel_digests(first, channel)
            assert tags in expected, f"round {round_}: the channel's tags name no single release: {tags}"
            last = entries[-1]["digests"]
            assert tags == {k: last[k] for k in first.units}, f"round {round_}: the tags are not the last entry's"
            for name, model in first.models.items():  # a model's channel tag moves with its service's
                if f"models/{name}" in last:
                    assert registry_digest(model.repository, channel) == last[f"models/{name}"], f"round {round_}"
    took = time.monotonic() - started
    print(f"\n{machines}: {ROUNDS} rounds in {took:.1f} s: {figures}, {len(entries)} entries; {dict(reasons)}")
    assert figures["promotions"] == 2 * ROUNDS and figures["succeeded"] >= ROUNDS
    if machines == "one machine":  # the host lock serializes them: both always go through
        assert figures["failed cleanly"] == 0


def test_a_past_entry_rewritten_in_the_registry_is_named(releases, registry: RegistryClient) -> None:  # type: ignore[no-untyped-def]
    root, first, second, _ = releases
    channel = f"tamper-{uuid.uuid4().hex[:8]}"
    for record in (first, second, first):
        assert promote(root, record.release, channel)[0] == 0
    assert shipyard("--project", str(root), "history", "--channel", channel, "--verify").returncode == 0
    document = json.loads(load_ledger(registry, NAMESPACE, channel).to_json())
    entry = document["entries"][1]  # second's promotion: point it at first's digests
    entry["digests"] = {k: u.digest for k, u in first.units.items()}
    push_document(
        registry, ledger_repository(NAMESPACE), channel, json.dumps(document).encode(), media_type=LEDGER_TYPE
    )
    result = shipyard("--project", str(root), "history", "--channel", channel, "--verify", check=False)
    assert result.returncode == 15, result.stdout + result.stderr
    assert result.stderr.startswith(
        f"shipyard: error: {channel}: ledger entry 2 ({entry['at']} promote {second.release} by {entry['by']}): "
        "signature does not verify with a trusted key (changed after sha256:"
    ), result.stderr
    assert result.stderr.count("\n") == 1
    # a rollback would restore that entry's digests: refused, and no tag moves
    tags = channel_digests(first, channel)
    rollback = shipyard("--project", str(root), "rollback", "--channel", channel, check=False)
    assert rollback.returncode == 15 and "ledger entry 2 (" in rollback.stderr and "rollback refused" in rollback.stderr
    assert channel_digests(first, channel) == tags
