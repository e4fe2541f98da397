from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.build.inputs import compute_inputs, context_files, why_changed


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "svc"
    (ctx / "pkg").mkdir(parents=True)
    (ctx / "pkg" / "app.py").write_text("print('hi')\n")
    (ctx / "pkg" / "model.py").write_text("W = 1\n")
    (ctx / "tests").mkdir()
    (ctx / "tests" / "test_app.py").write_text("def test(): pass\n")
    (ctx / "notes.md").write_text("notes\n")
    (ctx / ".dockerignore").write_text("tests/\n*.md\n**/__pycache__\n")
    return ctx


def inputs(context: Path, tmp_path: Path, **changes: object):  # type: ignore[no-untyped-def]
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    kwargs = {
        "dockerfile": "FROM x\nRUN true\n",
        "build_args": {"A": "1"},
        "platform": "linux/amd64",
        "parent": "localhost:5000/ns/cpu/base@sha256:" + "a" * 64,
        "context": context,
        "named_contexts": {"wheels": wheels},
    } | changes
    return compute_inputs(**kwargs)  # type: ignore[arg-type]


def test_dockerignored_files_are_not_inputs(context: Path) -> None:
    assert sorted(context_files(context)) == [".dockerignore", "pkg/app.py", "pkg/model.py"]
    (context / "pkg" / "__pycache__").mkdir()
    (context / "pkg" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"x")
    (context / "tests" / "test_more.py").write_text("x")
    (context / "README.md").write_text("x")
    assert sorted(context_files(context)) == [".dockerignore", "pkg/app.py", "pkg/model.py"]


def test_negated_pattern_keeps_a_file(context: Path) -> None:
    (context / ".dockerignore").write_text("*.md\n!notes.md\n")
    assert "notes.md" in context_files(context)


def test_digest_is_stable_and_moves_with_each_input(context: Path, tmp_path: Path) -> None:
    base = inputs(context, tmp_path)
    assert inputs(context, tmp_path).digest == base.digest
    ignored = context / "tests" / "test_app.py"
    ignored.write_text("changed")
    assert inputs(context, tmp_path).digest == base.digest, "a .dockerignored file is not an input"
    variants = {
        "dockerfile": inputs(context, tmp_path, dockerfile="FROM x\nRUN false\n"),
        "build args": inputs(context, tmp_path, build_args={"A": "2"}),
        "platform": inputs(context, tmp_path, platform="linux/arm64"),
        "parent": inputs(context, tmp_path, parent="localhost:5000/ns/cpu/base@sha256:" + "b" * 64),
    }
    for name, changed in variants.items():
        assert changed.digest != base.digest, name
    (tmp_path / "wheels" / "numpy.whl").write_bytes(b"wheel")
    assert inputs(context, tmp_path).digest != base.digest, "named context content"
    (context / "pkg" / "app.py").write_text("print('bye')\n")
    assert inputs(context, tmp_path).contexts == inputs(context, tmp_path).contexts
    changed_file = inputs(context, tmp_path)
    assert changed_file.files["pkg/app.py"] != base.files["pkg/app.py"]


def test_why_changed_names_the_input(context: Path, tmp_path: Path) -> None:
    before = inputs(context, tmp_path)
    (context / "pkg" / "model.py").write_text("W = 2\n")
    after = inputs(context, tmp_path, build_args={"A": "2"})
    reasons = why_changed(before.to_record(), after)
    assert reasons == ["build args changed: A", "context files changed: pkg/model.py"]
    assert why_changed(None, after) == ["no earlier build of this unit"]
    moved = replace(before, parent="sha256:" + "c" * 64)
    assert why_changed(before.to_record(), moved) == ["parent image changed"]
