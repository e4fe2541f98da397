"""The build breakdown's reader (bench/breakdown.py): buildx lines by unit into seconds per kind of work."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import breakdown  # noqa: E402

OUTPUT = """\
  cpu/base | #1 [internal] load build definition from Dockerfile
  cpu/base | #1 transferring dockerfile: 245B done
  cpu/base | #1 DONE 0.1s
  cpu/mid | #1 [internal] load build definition from Dockerfile
  cpu/base | #5 [2/3] RUN python -c 'print(1)'
  cpu/mid | #1 DONE 0.2s
  cpu/base | #5 DONE 1.5s
  cpu/base | #8 exporting to image
  cpu/base | #8 exporting layers 0.1s done
  cpu/base | #8 pushing layers 0.3s done
  cpu/base | #8 DONE 0.6s
  cpu/base | #9 exporting cache to registry
  cpu/base | #9 preparing build cache for export 0.2s done
  cpu/base | #9 writing layer sha256:abc 0.05s done
  cpu/base | #9 DONE 0.4s
12:00:03 cpu/base: provenance sha256:1, SBOM sha256:2 (40 components), signed (sha256:3…) in 1.2s
  cpu/mid | #5 [2/2] RUN true
  cpu/mid | #5 DONE 2.0s
"""


def test_lines_by_unit_become_seconds_per_kind_of_work() -> None:
    lines = iter((float(i), text) for i, text in enumerate(OUTPUT.splitlines()))
    units, kinds, subs = breakdown.read_output(lines)
    assert kinds == {"setup": 0.1 + 0.2, "Dockerfile steps": 1.5 + 2.0, "export + push": 0.6, "cache export": 0.4}
    assert subs == {
        "export: layers": 0.1,
        "push: layers": 0.3,
        "cache export: prepare": 0.2,
        "cache export: layers": 0.05,
    }
    assert units["cpu/base"].attest_s == 1.2 and units["cpu/mid"].attest_s == 0.0
    assert (units["cpu/base"].first, units["cpu/base"].last) == (0.0, 14.0)
    assert (units["cpu/mid"].first, units["cpu/mid"].last) == (3.0, 17.0)
    # the child's buildx started 3 s in, before its parent's last line (14 s): no gap counted below zero
    times = breakdown.BuildTimes(20.0, units, kinds, subs, 0.0, [])
    assert breakdown.gaps(times, {"base": "base:python", "mid": "base"}, ["cpu"]) == [0.0]
    assert times.attest_tail() == 3.0
