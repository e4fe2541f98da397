"""The scaling benchmark's generator and its results writer (bench/): no engine, no registry."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from shipyard.build.plan import make_plan
from shipyard.build.render import RenderInputs, TemplateRenderer
from shipyard.config.project import load_project
from shipyard.config.registry import parse_registry

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import catalog_gen  # noqa: E402
import scale_report  # noqa: E402

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(("units", "shape"), [(18, (3, 6)), (50, (5, 10)), (100, (5, 20)), (6, (1, 6)), (12, (3, 4))])
def test_shapes(units: int, shape: tuple[int, int]) -> None:
    assert catalog_gen.shape_for(units) == shape
    assert catalog_gen.parse_shape(str(units)) == shape


def test_explicit_shape_and_too_small_ones() -> None:
    assert catalog_gen.parse_shape("2x5") == (2, 5)
    with pytest.raises(ValueError):
        catalog_gen.parse_shape("2x3")
    with pytest.raises(ValueError):
        catalog_gen.shape_for(3)


@pytest.mark.parametrize(("profiles", "images"), [(3, 6), (5, 10), (5, 20), (1, 4), (2, 5)])
def test_generated_catalog_loads_with_shipyards_loader(tmp_path: Path, profiles: int, images: int) -> None:
    cat = catalog_gen.generate(tmp_path / "p", profiles, images, commit=False)
    assert cat.units == profiles * images
    assert cat.max_depth == (4 if images >= 6 else 3)
    assert all(parent == "base:python" or parent in cat.parents for parent in cat.parents.values())
    project = load_project(cat.root, base_override="python=localhost:5000/b/base@sha256:" + "a" * 64)
    assert sorted(project.profiles) == sorted(cat.profiles)
    assert {name: spec.parent for name, spec in project.catalog.images.items()} == cat.parents
    plan = make_plan(project.profiles, project.catalog, release_tag="20250111-656873b3", target=parse_registry(None))
    assert len(plan.units) == cat.units
    renderer = TemplateRenderer(project.templates, project.catalog.policy)
    for unit in plan.units:  # every template renders (StrictUndefined) for every unit
        text = renderer.render(RenderInputs(unit.profile, unit.image, "x@sha256:" + "c" * 64, {}))
        assert text.rstrip().endswith("USER 10001:10001")
        if unit.image.parent != "base:python":
            assert "COPY input.txt" in text and "range(1000000)" in text


def test_the_changed_family_takes_its_subtree_along() -> None:
    parents = catalog_gen.image_parents(6)
    assert parents == {
        "base": "base:python",
        "mid-a": "base",
        "mid-b": "base",
        "leaf-00": "mid-a",
        "leaf-01": "mid-b",
        "leaf-02": "leaf-00",
    }
    cat = catalog_gen.GeneratedCatalog(Path("."), ("p0", "p1"), catalog_gen.image_parents(20))
    subtree = cat.subtree("mid-a")
    assert subtree[0] == "mid-a" and "mid-b" not in subtree and "base" not in subtree
    assert 0.3 < len(subtree) / 20 < 0.6  # about half of the leaves hang under each mid family


def test_generated_project_is_a_committed_repo_and_commits_change_what_they_say(tmp_path: Path) -> None:
    cat = catalog_gen.generate(tmp_path / "p", 1, 4, work=10)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=cat.root, capture_output=True, text=True)
    assert status.stdout == ""
    catalog_gen.commit_no_op(cat, "n1")
    changed = catalog_gen.git(cat.root, "show", "--name-only", "--format=", "HEAD").split()
    assert changed == ["README.md"]  # in no image's context
    catalog_gen.change_image(cat, "mid-a", "c1")
    changed = catalog_gen.git(cat.root, "show", "--name-only", "--format=", "HEAD").split()
    assert changed == ["families/mid-a/input.txt"]
    with pytest.raises(ValueError):
        catalog_gen.generate(cat.root, 1, 4)  # never over a project


def _raw() -> dict[str, Any]:
    def size(n: int, cold: float, noop: float, promote: float, verify: float) -> dict[str, Any]:
        return {
            "profiles": 3,
            "images": n // 3,
            "depth": 4,
            "changed_image": "mid-a",
            "expected_rebuilt": 9,
            "rebuilt": [9],
            "floors": {"retag_loop_s": 0.1, "get_rtt_s": 0.002},
            "runs": {
                "cold": {"shipyard": [cold, cold + 2, cold + 1], "bake": [40.0, 40.0, 40.0]},
                "cold --no-attest": {"shipyard": [cold - 1, cold - 3], "bake": [40.0, 40.0, 40.0]},
                "no-op": {"shipyard": [noop], "bake": [20.0]},
                "one-changed": {"shipyard": [5.0], "bake": [10.0]},
                "promote": {"shipyard": [promote], "skopeo copy": [4.0]},
                "verify (cold listing cache)": {"shipyard": [2 * verify], "skopeo inspect": [1.0]},
                "verify (warm listing cache)": {"shipyard": [verify], "skopeo inspect": [1.0]},
            },
        }

    return {
        "meta": {"repeat": 3, "pruned": True},
        "floors": {"python_start_s": 0.02, "shipyard_import_s": 0.3},
        "sizes": {"100": size(100, 44.0, 6.0, 0.5, 20.0), "18": size(18, 40.0, 1.8, 0.3, 2.0)},
    }


def test_rows_have_medians_ratios_targets_and_floors() -> None:
    found = {(r.n, r.case): r for r in scale_report.rows(_raw())}
    cold = found[(18, "cold")]
    assert cold.shipyard == 41.0 and cold.anchor_s == 40.0  # medians
    assert cold.ratio == pytest.approx(41 / 40) and cold.met is True  # ≤ 1.05×
    assert found[(100, "cold")].met is False  # 45 / 40 > 1.05
    noop = found[(18, "no-op")]
    assert noop.ratio == pytest.approx(0.09) and noop.met is True
    assert "floor 0.42 s" in noop.note  # start + imports + retag loop
    assert found[(100, "no-op")].met is False  # 0.30×
    assert found[(100, "promote")].ratio == pytest.approx(0.125) and found[(100, "promote")].met is False
    warm, cold_cache = found[(100, "verify (warm listing cache)")], found[(100, "verify (cold listing cache)")]
    assert warm.met is False and "0.200 s/unit" in warm.note and "0.400 s/unit" in cold_cache.note
    # promote's and verify's targets are the at N = 100 only: shown, not judged, at N = 18
    at_18 = found[(18, "verify (warm listing cache)")]
    assert at_18.met is None and "0.111 s/unit" in at_18.note and at_18.target == "(< 0.15 s/unit at N = 100)"
    assert found[(18, "promote")].met is None and found[(18, "promote")].target == "(≤ 0.10× at N = 100)"
    assert (
        found[(18, "one-changed")].met is True  # 0.50× ≤ 0.80×
        and "9 of 18 units rebuilt (expected 9" in found[(18, "one-changed")].note
    )
    # the attestations: cold (median 41 s) minus cold --no-attest (median 38 s), 7.3 % of cold > 5 %
    share = found[(18, "attestations (cold − cold --no-attest)")]
    assert share.shipyard == pytest.approx(3.0) and share.ratio == pytest.approx(3 / 41) and share.met is False
    assert share.note == "7.3% of cold"
    assert [r.n for r in scale_report.rows(_raw())][:5] == [18] * 5  # by N, then in case order
    lo, hi, growth = scale_report.noop_growth(_raw()) or (0, 0, 0.0)
    assert (lo, hi) == (18, 100) and growth == pytest.approx(6.0 / 1.8)


def test_table_has_one_line_per_row() -> None:
    table = scale_report.markdown_table(scale_report.rows(_raw()))
    assert len(table) == 2 + 16  # 8 rows per N: cold, --no-attest, attestations, no-op, …, verify ×2
    assert "| 18 | no-op | 1.80 | bake | 20.00 | **0.09×** | ≤ 0.10× | yes |" in table[5]


def test_svg_is_well_formed_with_one_polyline_per_series() -> None:
    root = ET.fromstring(scale_report.svg_plot(_raw()))
    assert root.tag == f"{SVG}svg"
    lines = root.findall(f".//{SVG}polyline")
    names = sorted(p.attrib["data-series"] for p in lines)
    assert names == sorted(
        [
            "cold/shipyard",
            "cold/bake",
            "no-op/shipyard",
            "no-op/bake",
            "promote/shipyard",
            "promote/skopeo copy",
            "verify (warm listing cache)/shipyard",
            "verify (warm listing cache)/skopeo inspect",
        ]
    )
    for line in lines:  # one point per N, x growing with N
        xs = [float(point.split(",")[0]) for point in line.attrib["points"].split()]
        assert len(xs) == 2 and xs[0] < xs[1]
    one_size = _raw()
    del one_size["sizes"]["100"]
    assert len(ET.fromstring(scale_report.svg_plot(one_size)).findall(f".//{SVG}polyline")) == 8


def test_sections_are_replaced_and_the_others_kept(tmp_path: Path) -> None:
    text = scale_report.replace_section(
        "# Benchmark results\n\n<!-- bench:repo:begin -->\nold\n<!-- bench:repo:end -->\n", "scale", "one"
    )
    text = scale_report.replace_section(text, "scale", "two")
    assert "old" in text and "two" in text and "one" not in text and text.count("bench:scale:begin") == 1
    (tmp_path / "RESULTS.md").write_text(text)
    scale_report.write_results(_raw(), tmp_path)
    written = (tmp_path / "RESULTS.md").read_text()
    assert "old" in written and "two" not in written and "![seconds over N per tool](scaling.svg)" in written
    assert json.loads((tmp_path / "scale-raw.json").read_text()) == _raw()
    ET.parse(tmp_path / "scaling.svg")


def test_a_failed_bake_of_every_target_shows_the_per_profile_anchor_and_why() -> None:
    import scale

    raw = _raw()
    raw["sizes"]["100"]["bake_per_profile"] = "ERROR: failed to solve: DeadlineExceeded: context deadline exceeded"
    found = {(r.n, r.case): r for r in scale_report.rows(raw)}
    cold = found[(100, "cold")]
    assert cold.anchor == "bake per profile (×3)" and "one bake of all 100 targets failed: ERROR: failed" in cold.note
    assert found[(100, "no-op")].anchor == "bake per profile (×3)" and found[(18, "cold")].anchor == "bake"
    table = "\n".join(scale_report.markdown_table([scale_report.Row(1, "cold", 1.0, "bake", 1.0, "—", None, "a|b")]))
    assert "a\\|b" in table  # a pipe in a note stays inside its cell
    log = "docker buildx bake -f x exited 1:\n#1 [internal] load\nERROR: failed to solve: DeadlineExceeded\n"
    assert scale.first_error(log) == "ERROR: failed to solve: DeadlineExceeded"
    assert scale.first_error("only this\n") == "only this"
