"""A verdict is bound to the release it was made for, on the real registry with the real verify gate.

Release B reuses every digest of the session's gated release A at another revision (as a later commit
that changed nothing of the cpu units would) and is verified for itself: A stays promotable, B is
promotable on its own verdicts, and a release C that never ran the gates is refused naming both.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

from shipyard.record import ReleaseRecord, load_record, save_record
from tests.integration.conftest import copy_project, registry_digest, shipyard, sign_as_gated


def promote(root: Path, record: ReleaseRecord, channel: str, *, check: bool = True):  # type: ignore[no-untyped-def]
    return shipyard("--project", str(root), "promote", record.release, "--channel", channel, "--profile", "cpu",
                    check=check)  # fmt: skip


def test_an_older_release_stays_promotable_after_a_newer_one_re_verified_its_digests(gated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source, a = gated
    root = copy_project(source, tmp_path / "proj")
    # what a later commit that changed nothing of the cpu units releases: A's images, reused
    cpu = {k: replace(u, reused_from=a.release) for k, u in a.units.items() if u.profile == "cpu"}
    run = uuid.uuid4().hex[:6]
    b = replace(a, release=f"{a.release}-b{run}", revision="b" * 40, units=cpu)
    save_record(root, b)
    verified = shipyard("--project", str(root), "verify", b.release)  # the real gate, for B
    assert "signed verdicts attached" in verified.stdout, verified.stdout
    sign_as_gated(load_record(root / ".shipyard" / "releases" / f"{b.release}.json"))  # scan and canary, for B

    older, newer = f"older-{run}", f"newer-{run}"
    promote(root, a, older)  # A after B re-verified the same digests: A's own verdicts still count
    promote(root, b, newer)
    for key, unit in cpu.items():
        assert registry_digest(unit.repository, older) == unit.digest == registry_digest(unit.repository, newer), key

    c = replace(a, release=f"{a.release}-c{run}", units=cpu)  # never gated
    save_record(root, c)
    refused = promote(root, c, f"never-{run}", check=False)
    assert refused.returncode == 13, refused.stderr
    line = refused.stderr.strip()
    assert "\n" not in line and f"no signed verify verdict of release {c.release} for " in line, line
    assert f"(its signed verify verdict is of release {b.release}, not of {c.release})" in line, line
    assert all(registry_digest(unit.repository, f"never-{run}") is None for unit in cpu.values())
