from __future__ import annotations

import re
from pathlib import Path

import pytest

from shipyard.build.plan import make_plan
from shipyard.build.render import PACKAGED, RenderInputs, TemplateRenderer, oci_labels
from shipyard.config.catalog import load_catalog
from shipyard.config.profiles import load_profiles
from shipyard.config.project import Project, load_project
from shipyard.config.registry import parse_registry
from shipyard.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PROFILES = load_profiles(REPO / "profiles", root=REPO)
CATALOG = load_catalog(REPO)
PLAN = make_plan(PROFILES, CATALOG, release_tag="20250111-656873b3", target=parse_registry(None))


def render(unit_key: str, templates: Path = REPO / "dockerfiles") -> str:
    unit = PLAN.unit(unit_key)
    labels = oci_labels(
        profile=unit.profile.name,
        image=unit.image.name,
        revision="656873b3" + "0" * 32,
        created="2025-01-11T12:00:00Z",
        source="https://example.test/repo",
        version=unit.tag,
        title=unit.image.name,
    )
    parent = "localhost:5000/shipyard/x@sha256:" + "b" * 64
    return TemplateRenderer(templates).render(RenderInputs(unit.profile, unit.image, parent, labels))


@pytest.mark.parametrize("key", [u.key for u in PLAN.units])
def test_every_template_renders_for_every_profile(key: str) -> None:
    text = render(key)
    unit = PLAN.unit(key)
    assert re.search(r"^FROM localhost:5000/shipyard/x@sha256:b{64}", text, re.M), "parent by digest"
    assert text.rstrip().endswith("USER 10001:10001")
    assert "HEALTHCHECK" in text
    assert 'LABEL org.opencontainers.image.revision="656873b3' in text
    assert f'LABEL io.shipyard.profile="{unit.profile.name}"' in text
    for name, value in unit.profile.env.items():
        assert f'ENV {name}="{value}"' in text
    for name in unit.profile.build_args:
        assert f"ARG {name}" in text
    assert "{{" not in text and "{%" not in text
    if unit.image.lock:
        assert "--no-index --find-links /wheels --require-hashes" in text
        assert "--mount=type=bind,from=wheels" in text
    if unit.image.service:
        assert f"EXPOSE {unit.image.service.port}" in text
        assert f'CMD ["python3", "-m", "{unit.image.service.module}"]' in text


def test_base_sets_user_tini_and_venv() -> None:
    text = render("mainpc/base-python")
    assert "useradd --system --uid 10001 --gid 10001" in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in text
    assert 'SHIPYARD_HARDWARE_GPU="RTX 4090"' in text
    assert "ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}" in text


def test_undefined_variable_names_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "dockerfiles").mkdir()
    for src in (REPO / "dockerfiles").iterdir():
        (tmp_path / "dockerfiles" / src.name).write_text(src.read_text())
    path = tmp_path / "dockerfiles" / "family.Dockerfile.j2"
    lines = path.read_text().splitlines()
    lines.insert(3, "RUN echo {{ profile.no_such_thing }}")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        render("cpu/family-web", tmp_path / "dockerfiles")
    assert str(err.value).startswith("dockerfiles/family.Dockerfile.j2:4: undefined variable:"), str(err.value)


def test_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    """A project's own dockerfiles/shipyard/macros.j2 comes before the packaged one (and its error is its own)."""
    (tmp_path / "dockerfiles" / "shipyard").mkdir(parents=True)
    for src in (REPO / "dockerfiles").glob("*.j2"):
        (tmp_path / "dockerfiles" / src.name).write_text(src.read_text())
    path = tmp_path / "dockerfiles" / "shipyard" / "macros.j2"
    path.write_text((PACKAGED / "shipyard" / "macros.j2").read_text() + "\n{% if %}\n")
    with pytest.raises(ConfigError) as err:
        render("cpu/family-web", tmp_path / "dockerfiles")
    assert re.match(r"^dockerfiles/shipyard/macros.j2:\d+: template syntax error", str(err.value)), str(err.value)


def test_the_packaged_macros_serve_a_project_without_any_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "dockerfiles").mkdir()
    for src in (REPO / "dockerfiles").glob("*.j2"):
        (tmp_path / "dockerfiles" / src.name).write_text(src.read_text())
    assert not list((tmp_path / "dockerfiles").glob("*macros*"))
    assert render("cpu/family-web", tmp_path / "dockerfiles") == render("cpu/family-web")
    packaged = PACKAGED / "shipyard" / "macros.j2"
    assert packaged.is_file()  # shipped with the package (pyproject's package-data)


def _team(tmp_path: Path, catalog: str, dockerfile: str | None = None) -> Project:
    (tmp_path / "profiles").mkdir()
    for name in ("cpu", "pc2"):
        (tmp_path / "profiles" / f"{name}.json").write_text((REPO / "profiles" / f"{name}.json").read_text())
    (tmp_path / "dockerfiles").mkdir()
    (tmp_path / "dockerfiles" / "base.Dockerfile.j2").write_text(
        (REPO / "dockerfiles" / "base-python.Dockerfile.j2").read_text()
    )
    (tmp_path / "app").mkdir()
    if dockerfile is not None:
        (tmp_path / "app" / "Dockerfile").write_text(dockerfile)
    (tmp_path / "shipyard.toml").write_text(catalog)
    return load_project(tmp_path, base_override="local")


TEAM = """
[policy]
user = "4242:4343"

[images.base]
kind = "family"
template = "base.Dockerfile.j2"
context = "app"
parent = "base:python"
build_args = {EXTRA = "from-image", TORCH_CUDA_ARCH_LIST = "image-wins"}

[images.web]
kind = "family"
template = "Dockerfile"
context = "app"
parent = "base"
profiles = ["pc2"]
"""
PLAIN = "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo {{ not jinja }}\n"


def test_policy_uid_and_image_build_args_reach_the_template(tmp_path: Path) -> None:
    project = _team(tmp_path, TEAM, PLAIN)
    plan = make_plan(project.profiles, project.catalog, release_tag="20250111-656873b3", target=parse_registry(None))
    unit = plan.unit("pc2/base")
    assert unit.build_args["EXTRA"] == "from-image" and unit.build_args["TORCH_CUDA_ARCH_LIST"] == "image-wins"
    labels = {"org.opencontainers.image.version": "20250111-656873b3"}
    text = TemplateRenderer(project.templates, project.catalog.policy).render(
        RenderInputs(unit.profile, unit.image, "base@sha256:" + "c" * 64, labels)
    )
    assert "useradd --system --uid 4242 --gid 4343" in text
    assert text.rstrip().endswith("USER 4242:4343")
    assert "ARG EXTRA" in text and "ENV EXTRA=${EXTRA}" in text


def test_a_plain_dockerfile_is_used_as_it_is_with_the_labels_appended(tmp_path: Path) -> None:
    project = _team(tmp_path, TEAM, PLAIN)
    plan = make_plan(project.profiles, project.catalog, release_tag="20250111-656873b3", target=parse_registry(None))
    assert [u.key for u in plan.units] == ["cpu/base", "pc2/base", "pc2/web"]  # web: pc2 only
    unit = plan.unit("pc2/web")
    labels = {"io.shipyard.image": "web"}
    text = TemplateRenderer(project.templates).render(RenderInputs(unit.profile, unit.image, "x@sha256:1", labels))
    assert text.startswith(PLAIN) and "{{ not jinja }}" in text
    assert text.rstrip().endswith('LABEL io.shipyard.image="web"')


def test_a_multi_platform_profile_builds_one_index_with_a_tini_per_platform(tmp_path: Path) -> None:
    project = _team(tmp_path, TEAM, PLAIN)
    pc2 = tmp_path / "profiles" / "pc2.json"
    pc2.write_text(pc2.read_text().replace('"platform": "linux/amd64"', '"platforms": ["linux/amd64", "linux/arm64"]'))
    project = load_project(tmp_path, base_override="local")
    plan = make_plan(project.profiles, project.catalog, release_tag="20250111-656873b3", target=parse_registry(None))
    multi, single = plan.unit("pc2/base"), plan.unit("cpu/base")
    assert multi.platform == "linux/amd64,linux/arm64" and single.platform == "linux/amd64"
    assert multi.base_key != single.base_key  # a base of its own: an index of both arches
    renderer = TemplateRenderer(project.templates, project.catalog.policy)
    text = renderer.render(RenderInputs(multi.profile, multi.image, "b@sha256:" + "c" * 64, {}))
    assert "ARG TARGETOS\nARG TARGETARCH\nCOPY --from=tools --chmod=0755 ${TARGETOS}_${TARGETARCH}/tini-static" in text
    plain = renderer.render(RenderInputs(single.profile, single.image, "b@sha256:" + "c" * 64, {}))
    assert "COPY --from=tools --chmod=0755 tini-static /usr/bin/tini" in plain and "TARGETARCH" not in plain
