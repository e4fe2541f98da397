from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.build.plan import make_plan
from shipyard.config.catalog import load_catalog
from shipyard.config.profiles import load_profiles
from shipyard.config.registry import parse_registry
from shipyard.dag import toposort
from shipyard.errors import ConfigError, CycleError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inputs():  # type: ignore[no-untyped-def]
    return load_profiles(REPO / "profiles", root=REPO), load_catalog(REPO)


def test_plan_orders_parents_first_for_every_profile(inputs) -> None:  # type: ignore[no-untyped-def]
    profiles, catalog = inputs
    plan = make_plan(profiles, catalog, release_tag="20250111-656873b3", target=parse_registry(None))
    keys = [u.key for u in plan.units]
    assert len(keys) == len(profiles) * len(catalog.images)
    for unit in plan.units:
        if unit.parent_unit:
            assert keys.index(unit.parent_unit) < keys.index(unit.key)
    unit = plan.unit("mainpc/family-web")
    assert unit.ref == "localhost:5000/shipyard/mainpc/family-web:20250111-656873b3"
    assert unit.cache_ref == "localhost:5000/shipyard/cache/mainpc/family-web"
    assert unit.parent_unit == "mainpc/base-python"
    assert plan.unit("pc2/base-python").base.ref.startswith("python:3.11-slim-bookworm@sha256:")  # type: ignore[union-attr]


def test_selection_brings_parents(inputs) -> None:  # type: ignore[no-untyped-def]
    profiles, catalog = inputs
    plan = make_plan(
        profiles,
        catalog,
        release_tag="t",
        target=parse_registry("ghcr.io/acme/ai-system"),
        only_profiles=["pc2"],
        only_images=["model-ops-coordinator"],
    )
    assert [u.key for u in plan.units] == [
        "pc2/base-python",
        "pc2/family-web",
        "pc2/family-ml",
        "pc2/model-ops-coordinator",
    ]
    assert plan.units[-1].ref == "ghcr.io/acme/ai-system/pc2/model-ops-coordinator:t"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"only_profiles": ["pc3"]}, "--profile: unknown profile 'pc3' (did you mean 'pc2'?)"),
        ({"only_images": ["family-webb"]}, "--image: unknown image 'family-webb' (did you mean 'family-web'?)"),
        ({"release_tag": "bad tag!"}, "release tag 'bad tag!' is not a valid OCI tag"),
    ],
)
def test_plan_errors(inputs, kwargs, message) -> None:  # type: ignore[no-untyped-def]
    profiles, catalog = inputs
    args = {"release_tag": "t", "target": parse_registry(None), **kwargs}
    with pytest.raises(ConfigError) as err:
        make_plan(profiles, catalog, **args)
    assert str(err.value).startswith(message)


def test_cycle_is_named(inputs) -> None:  # type: ignore[no-untyped-def]
    profiles, catalog = inputs
    images = dict(catalog.images)
    images["base-python"] = replace(images["base-python"], parent="family-ml")
    with pytest.raises(CycleError) as err:
        make_plan(profiles, replace(catalog, images=images), release_tag="t", target=parse_registry(None))
    assert str(err.value) == "catalog: parents form a cycle: base-python -> family-ml -> family-web -> base-python"


def test_toposort_keeps_input_order_for_independent_nodes() -> None:
    assert toposort({"b": [], "a": [], "c": ["a"]}) == ["b", "a", "c"]
