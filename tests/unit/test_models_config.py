"""``[models.<name>]`` and a service's ``models``: what the catalog accepts, and the one line it gives for
what it does not (naming the key, before anything is pushed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipyard.config.catalog import load_catalog
from shipyard.config.models import DEFAULT_MODEL_DIR, PinnedArtifact
from shipyard.errors import ConfigError
from tests.unit.test_catalog import SERVICE, catalog_with

DIGEST = "sha256:" + "ab" * 32
MODELS = f"""
[models.affect-nb]
path = "models/affect-nb"
format = "safetensors"
size_budget_mb = 5
description = "the naive Bayes weights"

[models.trained]
from = "ghcr.io/acme/models/trained@{DIGEST}"
format = "gguf"
"""
NEEDS = 'module = "svc"\nmodels = ["affect-nb", "trained"]\n'


def project(tmp_path: Path, models: str = MODELS, service: str = SERVICE.replace('module = "svc"\n', NEEDS)) -> Path:
    root = catalog_with(tmp_path, service + models)
    (root / "models" / "affect-nb").mkdir(parents=True)
    (root / "models" / "affect-nb" / "weights.safetensors").write_bytes(b"\x00" * 64)
    (root / "models" / "affect-nb" / "config.json").write_text("{}")
    return root


def error_of(root: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_catalog(root)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_models_and_the_services_that_need_them(tmp_path: Path) -> None:
    root = project(tmp_path)
    catalog = load_catalog(root)
    local, trained = catalog.models["affect-nb"], catalog.models["trained"]
    assert local.path == (root / "models" / "affect-nb").resolve() and local.artifact is None
    assert (local.format, local.size_budget_mb, local.source) == ("safetensors", 5, "path")
    assert trained.artifact == PinnedArtifact("ghcr.io", "acme/models/trained", DIGEST)
    assert (trained.path, trained.source, trained.size_budget_mb) == (None, "from", None)
    service = catalog.images["svc"].service
    assert service is not None and service.models == ("affect-nb", "trained")
    assert service.model_dir == DEFAULT_MODEL_DIR == "/models"
    assert catalog.models_for(["svc"]) == ["affect-nb", "trained"]
    assert catalog.models_for(["family-web"]) == []


def test_a_catalog_without_models_needs_none(tmp_path: Path) -> None:
    catalog = load_catalog(catalog_with(tmp_path, SERVICE))
    assert catalog.models == {}
    assert catalog.images["svc"].service.models == ()  # type: ignore[union-attr]


def test_model_dir_is_where_the_service_expects_them(tmp_path: Path) -> None:
    root = project(tmp_path, service=SERVICE.replace('module = "svc"\n', NEEDS + 'model_dir = "/srv/models"\n'))
    assert load_catalog(root).images["svc"].service.model_dir == "/srv/models"  # type: ignore[union-attr]


def test_a_symlink_inside_the_project_is_fine(tmp_path: Path) -> None:
    root = project(tmp_path)
    (root / "shared.bin").write_bytes(b"1")
    (root / "models" / "affect-nb" / "shared.bin").symlink_to(root / "shared.bin")
    assert load_catalog(root).models["affect-nb"].path is not None


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'models = ["affect-nb", "trained"]',
            'models = ["afect-nb"]',
            "shipyard.toml: images.svc.service.models[0]: unknown model 'afect-nb' (did you mean 'affect-nb'?); "
            "the catalog's models: affect-nb, trained",
        ),
        ('path = "models/affect-nb"', 'path = "../outside"', "shipyard.toml: models.affect-nb.path: '../outside' is "),
        ('path = "models/affect-nb"', 'path = "/etc"', "shipyard.toml: models.affect-nb.path: '/etc' is absolute"),
        (
            'path = "models/affect-nb"',
            'path = "models/nope"',
            "shipyard.toml: models.affect-nb.path: directory 'models/nope' does not exist",
        ),
        (
            'format = "gguf"',
            'format = "gguf"\npath = "models/affect-nb"',
            "shipyard.toml: models.trained.from: give either path (a directory of the project) or from",
        ),
        (
            'path = "models/affect-nb"\n',
            "",
            "shipyard.toml: models.affect-nb.path: missing (required): give path (a directory of the project) or from",
        ),
        (
            f"trained@{DIGEST}",
            "trained:v3",
            "shipyard.toml: models.trained.from: 'ghcr.io/acme/models/trained:v3' is not pinned by digest; "
            "expected host/repository@sha256:<digest>",
        ),
        (
            f"ghcr.io/acme/models/trained@{DIGEST}",
            f"trained@{DIGEST}",
            "shipyard.toml: models.trained.from: 'trained@sha256:",
        ),
        ('format = "gguf"\n', "", "shipyard.toml: models.trained.format: missing (required)"),
        ("size_budget_mb = 5", "size_budget_mb = 0", "shipyard.toml: models.affect-nb.size_budget_mb: expected a "),
        (
            "size_budget_mb = 5",
            "sise_budget_mb = 5",
            "shipyard.toml: models.affect-nb.sise_budget_mb: unknown key (did you mean ",
        ),
        ("[models.trained]", "[models.Trained]", "shipyard.toml: models.Trained: model name 'Trained': use lowercase"),
        (
            'models = ["affect-nb", "trained"]',
            'models = ["affect-nb"]\nmodel_dir = "models"',
            "shipyard.toml: images.svc.service.model_dir: expected an absolute directory in the container like "
            "/models, got 'models'",
        ),
    ],
)
def test_each_mistake_is_one_line_naming_the_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    root = project(tmp_path)
    catalog = root / "shipyard.toml"
    text = catalog.read_text()
    assert old in text, old
    catalog.write_text(text.replace(old, new, 1))
    assert error_of(root).startswith(message)


def test_an_unknown_model_in_a_catalog_without_models(tmp_path: Path) -> None:
    root = catalog_with(tmp_path, SERVICE.replace('module = "svc"\n', 'module = "svc"\nmodels = ["m"]\n'))
    assert error_of(root) == (
        "shipyard.toml: images.svc.service.models[0]: unknown model 'm'; "
        "the catalog's models: none ([models.<name>] tables declare them)"
    )


def test_an_empty_directory_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path)
    directory = root / "models" / "affect-nb"
    for path in directory.iterdir():
        path.unlink()
    (directory / ".gitattributes").write_text("*.bin filter=lfs\n")  # hidden: not a model file
    assert error_of(root) == (
        "shipyard.toml: models.affect-nb.path: 'models/affect-nb' has no model files "
        "(hidden files and directories are left out)"
    )


def test_a_symlink_out_of_the_project_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"secret")
    (root / "models" / "affect-nb" / "sub").mkdir()
    (root / "models" / "affect-nb" / "sub" / "weights.bin").symlink_to(outside)
    assert error_of(root) == (
        f"shipyard.toml: models.affect-nb.path: models/affect-nb/sub/weights.bin is a symlink to {outside.resolve()}, "
        "outside the project; copy the file in, or push it elsewhere and name it with from"
    )


def test_a_symlinked_directory_out_of_the_project_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path)
    (tmp_path / "cache").mkdir()
    os.symlink(tmp_path / "cache", root / "models" / "affect-nb" / "tokenizer")
    assert "models/affect-nb/tokenizer is a symlink to" in error_of(root)


def test_the_path_itself_a_symlink_out_of_the_project(tmp_path: Path) -> None:
    root = project(tmp_path)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.bin").write_bytes(b"1")
    (root / "models" / "linked").symlink_to(tmp_path / "weights")
    catalog = root / "shipyard.toml"
    catalog.write_text(catalog.read_text().replace('path = "models/affect-nb"', 'path = "models/linked"'))
    assert error_of(root).startswith("shipyard.toml: models.affect-nb.path: 'models/linked' is outside the project")
