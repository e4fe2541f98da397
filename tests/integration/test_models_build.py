"""Models released like images, against the real local registry: ``shipyard build`` of a tiny project (one
profile, one service that lists a small model directory) pushes the model as a ModelPack artifact under
the release tag, the record pins its digest on the service's unit, a second build of the commit uploads no
model byte, a ``from`` model is recorded by its digest and tagged server-side, and each bad model input
is one line, exit 2, and nothing pushed.

The registry namespace is this file's own (``localhost:5000/wt-models-it-<run>``), and what the registry
holds is read from it (``inspect_model``, the catalog API), not taken from shipyard's word.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from shipyard.config.registry import parse_registry
from shipyard.oci.client import RegistryClient
from shipyard.oci.modelpack import inspect_model
from shipyard.record import ReleaseRecord, load_record
from tests.conftest import git, make_project
from tests.integration.conftest import isolated, registry_digest, shipyard

RUN = secrets.token_hex(3)
REGISTRY = f"localhost:5000/wt-models-it-{RUN}"
SERVICE = "affective-processing-center"
SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {"SHIPYARD_REGISTRY": REGISTRY, "SHIPYARD_BASE_OVERRIDE": "local", "PYTHONPATH": str(SRC)}
FILES = {
    "weights.safetensors": os.urandom(64 << 10),
    "config.json": b'{"classes": ["joy", "anger", "sadness"]}',
    "tokenizer/vocab.txt": b"happy\ngrateful\nwonderful\n",
    "README.md": b"# affect-nb\n",
}
MODEL = '\n[models.affect-nb]\npath = "models/affect-nb"\nformat = "safetensors"\nsize_budget_mb = 1\n'


def with_model(root: Path, catalog_extra: str = MODEL, needs: str = '["affect-nb"]') -> Path:
    for rel, data in FILES.items():
        (root / "models" / "affect-nb" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "models" / "affect-nb" / rel).write_bytes(data)
    catalog = root / "shipyard.toml"
    text = catalog.read_text()
    table = f"[images.{SERVICE}.service]\n"
    assert table in text
    catalog.write_text(text.replace(table, f"{table}models = {needs}\n") + catalog_extra)
    return root


def commit(root: Path, message: str) -> str:
    git(root, "add", "-A")
    git(root, "commit", "-qm", message)
    return git(root, "rev-parse", "HEAD")


def record_of(root: Path, sha: str) -> ReleaseRecord:
    return load_record(root / ".shipyard" / "releases" / f"20250111-{sha[:8]}.json")


def repositories(prefix: str) -> list[str]:
    """Every repository of the local registry under ``prefix/``, following the catalog's pages."""
    found: list[str] = []
    url: str | None = "http://localhost:5000/v2/_catalog?n=1000"
    while url:
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        found += [r for r in response.json().get("repositories") or [] if r.startswith(prefix + "/")]
        link = re.match(r'<([^>]+)>;\s*rel="next"', response.headers.get("Link", ""))
        url = f"http://localhost:5000{link.group(1)}" if link else None
    return found


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_project(
        tmp_path_factory.mktemp("models") / "proj", services=(SERVICE,), profiles=("cpu",), models=False
    )
    with_model(root)
    commit(root, "a service released with a model")
    return isolated(root)


def test_build_pushes_the_model_records_it_and_a_second_build_uploads_nothing(project: Path) -> None:
    first = shipyard("--project", str(project), "build", env=ENV)
    sha = git(project, "rev-parse", "HEAD")
    release = f"20250111-{sha[:8]}"
    record = record_of(project, sha)
    model = record.models["affect-nb"]
    path = f"wt-models-it-{RUN}/models/affect-nb"
    assert (model.repository, model.tag, model.source, model.origin) == (
        f"localhost:5000/{path}",
        release,
        "path",
        "models/affect-nb",
    )
    assert sorted(f.path for f in model.files) == sorted(FILES)
    assert model.size == sum(len(d) for d in FILES.values())
    assert record.units[f"cpu/{SERVICE}"].models == {"affect-nb": model.digest}
    assert all(not unit.models for key, unit in record.units.items() if key != f"cpu/{SERVICE}")
    # the registry's word: the tag names the digest, and it is a ModelPack artifact of these files
    assert registry_digest(f"localhost:5000/{path}", release) == model.digest
    signature = f"sha256-{model.digest.removeprefix('sha256:')}.sig"  # signed as images are (cosign's layout)
    assert registry_digest(f"localhost:5000/{path}", signature) is not None
    with RegistryClient(parse_registry(REGISTRY)) as registry:
        pack = inspect_model(registry, path, release)
    assert (pack.digest, pack.name, pack.format) == (model.digest, "affect-nb", "safetensors")
    assert {f.path: f.size for f in pack.files} == {p: len(d) for p, d in FILES.items()}
    uploaded = re.search(r"model affect-nb: pushed .*; (\d+) bytes uploaded\)", first.stdout)
    assert uploaded and int(uploaded[1]) >= model.size, first.stdout

    again = shipyard("--project", str(project), "build", env=ENV)
    assert re.search(r"model affect-nb: reused \(same files\) .*; 0 bytes uploaded\)", again.stdout), again.stdout
    assert record_of(project, sha).models["affect-nb"].digest == model.digest

    # a model another pipeline pushed, pinned by digest: read back, recorded, tagged beside the others
    source = f"localhost:5000/{path}@{model.digest}"
    catalog = project / "shipyard.toml"
    text = catalog.read_text().replace('models = ["affect-nb"]', 'models = ["affect-nb", "trained"]')
    catalog.write_text(text + f'\n[models.trained]\nfrom = "{source}"\nformat = "safetensors"\n')
    sha = commit(project, "and a trained model by digest")
    third = shipyard("--project", str(project), "build", env=ENV)
    trained = record_of(project, sha).models["trained"]
    assert (trained.digest, trained.source, trained.origin) == (model.digest, "from", source)
    assert trained.repository == f"localhost:5000/wt-models-it-{RUN}/models/trained" and trained.tag
    assert registry_digest(trained.repository, trained.tag) == model.digest, third.stdout
    assert record_of(project, sha).units[f"cpu/{SERVICE}"].models == {
        "affect-nb": model.digest,
        "trained": model.digest,
    }


Mutation = Callable[[Path], None]


def replace(old: str, new: str) -> Mutation:
    def apply(root: Path) -> None:
        catalog = root / "shipyard.toml"
        text = catalog.read_text()
        assert old in text, old
        catalog.write_text(text.replace(old, new, 1))

    return apply


def symlink_out(root: Path) -> None:
    outside = root.parent / "outside.bin"
    outside.write_bytes(b"not in the repository")
    (root / "models" / "affect-nb" / "extra.bin").symlink_to(outside)


def emptied(root: Path) -> None:
    shutil.rmtree(root / "models" / "affect-nb")
    (root / "models" / "affect-nb").mkdir()


def too_big(root: Path) -> None:
    (root / "models" / "affect-nb" / "weights.safetensors").write_bytes(b"\x00" * 1_200_000)


DIGEST = "sha256:" + "0" * 64
CASES: dict[str, tuple[Mutation, str]] = {
    "unknown model": (
        replace('models = ["affect-nb"]', 'models = ["afect-nb"]'),
        f"shipyard.toml: images.{SERVICE}.service.models[0]: unknown model 'afect-nb' (did you mean 'affect-nb'?)",
    ),
    "path outside": (
        replace('path = "models/affect-nb"', 'path = "../elsewhere"'),
        "shipyard.toml: models.affect-nb.path: '../elsewhere' is outside the project",
    ),
    "symlink out": (symlink_out, "shipyard.toml: models.affect-nb.path: models/affect-nb/extra.bin is a symlink to"),
    "empty": (emptied, "shipyard.toml: models.affect-nb.path: 'models/affect-nb' has no model files"),
    "both": (
        replace('format = "safetensors"', f'format = "safetensors"\nfrom = "localhost:5000/x/m@{DIGEST}"'),
        "shipyard.toml: models.affect-nb.from: give either path (a directory of the project) or from",
    ),
    "neither": (
        replace('path = "models/affect-nb"\n', ""),
        "shipyard.toml: models.affect-nb.path: missing (required): give path",
    ),
    "from by tag": (
        replace('path = "models/affect-nb"', 'from = "localhost:5000/x/m:latest"'),
        "shipyard.toml: models.affect-nb.from: 'localhost:5000/x/m:latest' is not pinned by digest",
    ),
    "over budget": (
        too_big,
        "shipyard.toml: models.affect-nb.size_budget_mb: model affect-nb is 1.2 MB (4 files), over its budget of 1 MB",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_model_is_one_line_exit_2_and_nothing_pushed(tmp_path: Path, case: str) -> None:
    mutate, expected = CASES[case]
    root = with_model(
        make_project(tmp_path / "proj", services=(SERVICE,), profiles=("cpu",), commit=False, models=False)
    )
    mutate(root)
    git(root, "init", "-q", "-b", "main")
    commit(root, "a bad model")
    namespace = f"wt-models-bad-{RUN}-{secrets.token_hex(2)}"
    env = {**ENV, "SHIPYARD_REGISTRY": f"localhost:5000/{namespace}"}
    result = shipyard("--project", str(root), "build", env=env, check=False)
    errors = [line for line in result.stderr.splitlines() if line.startswith("shipyard: error:")]
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert len(errors) == 1 and errors[0].removeprefix("shipyard: error: ").startswith(expected), result.stderr
    assert repositories(namespace) == []
    assert not (root / ".shipyard" / "releases").exists() or not list((root / ".shipyard" / "releases").iterdir())
