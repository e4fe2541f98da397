"""The concurrency benchmark's figures (bench/concurrency.py): refusals grouped by reason, the section it writes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))  # bench/concurrency.py imports scale_report as its script would
_spec = importlib.util.spec_from_file_location("bench_concurrency", BENCH / "concurrency.py")
assert _spec is not None and _spec.loader is not None
concurrency = importlib.util.module_from_spec(_spec)
sys.modules["bench_concurrency"] = concurrency  # its dataclasses look their module up
_spec.loader.exec_module(concurrency)

MOVED = "channel moved during the promotion; run it again"


def test_refusals_are_grouped_by_their_reason_not_their_names_or_numbers() -> None:
    why = "another promotion wrote the ledger over this one's; no tag moved"
    one = f"shipyard: error: promote 20250112-0f7272dd to stable: {MOVED} ({why})\n"
    other = one.replace("20250112-0f7272dd", "20250301-abcdef12")
    assert (
        concurrency.reason_of(13, one)
        == concurrency.reason_of(13, other)
        == ("exit 13: channel moved: another promotion wrote the ledger over this one's; no tag moved")
    )
    slow = (
        "shipyard: error: registry 127.0.0.1:4100: GET /v2/x/manifests/sha256:0123456789ab failed 10 time(s) in 3.2 s"
    )
    assert (
        concurrency.reason_of(5, slow) == "exit 5: registry N.N:N: GET /vN/x/manifests/<digest> failed N time(s) in N s"
    )


def test_the_section_names_every_writer_refusal_and_check() -> None:
    raw = {
        "meta": {"measured": "2026-12-04 23:00 UTC", "host": "vm", "cores": 2, "python": "3.11.7", "minutes": 5.0,
                 "rate": 0.15, "setup_s": 70.0, "docker": "26.1.5", "command": "nox -s bench -- --concurrency"},
        "done": {"promote": 9, "rollback": 7, "deploy": 7, "prune": 4},
        "outcomes": {"deploy: deployed": 6, "deploy: unchanged": 1, "prune: manifests deleted": 30},
        "refused": {"rollback: exit 13: channel moved: x": 6}, "failed": {},
        "seconds": {"promote": 78.9}, "requests": 2579, "faults": {"429": 82, "stall": 57}, "reported_entries": 16,
        "checks": [{"when": "end", "ledger_entries": 18, "deployment_entries": 8, "channel_on": "20250123-1b2b4330",
                    "older_deployment_images_pruned": 0, "problems": []}],
    }  # fmt: skip
    text = "\n".join(concurrency.section(raw))
    assert "| promote | 9 | 0 | 0 | 78.9 |" in text and "| rollback | 7 | 6 | 0 | 0 |" in text
    assert "- 6 × rollback: exit 13: channel moved: x" in text and "Failures:\n\n- none" in text
    assert "deployed 6, unchanged 1" in text and "30 manifests deleted" in text
    assert "| end | 18 | 8 | 20250123-1b2b4330 | 0 | all hold |" in text
    assert "139 of shipyard's 2579 requests (15%: 429 82, stall 57)" in text
