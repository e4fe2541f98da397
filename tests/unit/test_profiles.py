from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard.config.profiles import apply_base_override, load_profiles
from shipyard.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

GOOD = {
    "platform": "linux/amd64",
    "python_version": "3.11",
    "bases": {"python": "local:debian-bookworm-python"},
    "hardware": {"gpu": "RTX 3060", "cuda_arch": "8.6"},
    "build_args": {"TORCH_CUDA_ARCH_LIST": "8.6"},
    "env": {"OMP_NUM_THREADS": "8"},
}


def load_one(tmp_path: Path, data: object, name: str = "pc2") -> object:
    d = tmp_path / "profiles"
    d.mkdir(exist_ok=True)
    (d / f"{name}.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return load_profiles(d, root=tmp_path)[name]


def test_repo_profiles_parse_with_their_hardware_defaults() -> None:
    profiles = load_profiles(REPO / "profiles", root=REPO)
    assert list(profiles) == ["cpu", "mainpc", "pc2"]
    assert profiles["mainpc"].build_args["TORCH_CUDA_ARCH_LIST"] == "8.9"
    assert profiles["mainpc"].env["UVICORN_WORKERS"] == "32"
    assert profiles["pc2"].build_args["TORCH_CUDA_ARCH_LIST"] == "8.6"
    assert profiles["cpu"].base("python").is_local
    assert not profiles["mainpc"].base("python").is_local


def test_good_profile(tmp_path: Path) -> None:
    profile = load_one(tmp_path, GOOD)
    assert profile.name == "pc2" and profile.hardware["gpu"] == "RTX 3060"  # type: ignore[attr-defined]
    assert profile.canary.memory == "512m"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"build_argz": {}}, "profiles/pc2.json: build_argz: unknown key (did you mean 'build_args'?)"),
        ({"build_args": {"CUDA_ARCH": 8.6}}, "profiles/pc2.json: build_args.CUDA_ARCH: expected a string, got 8.6"),
        ({"platform": "linux/s390x"}, "profiles/pc2.json: platform: expected linux/amd64 or linux/arm64"),
        ({"python_version": 3.11}, "profiles/pc2.json: python_version: expected a string, got 3.11"),
        (
            {"bases": {"python": "python:3.11-slim"}},
            "profiles/pc2.json: bases.python: 'python:3.11-slim' is not pinned",
        ),
        ({"bases": {}}, "profiles/pc2.json: bases: missing (required)"),
        ({"build_args": {"HF_TOKEN": "x"}}, "profiles/pc2.json: build_args.HF_TOKEN: looks like a secret"),
        ({"env": {"1BAD": "x"}}, "profiles/pc2.json: env.1BAD: not a valid variable name"),
        ({"name": "mainpc"}, "profiles/pc2.json: name: 'mainpc' does not match the file name 'pc2'"),
        ({"canary": {"memroy": "1g"}}, "profiles/pc2.json: canary.memroy: unknown key (did you mean 'memory'?)"),
    ],
)
def test_profile_errors_name_file_and_key(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_one(tmp_path, {**GOOD, **change})
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_missing_required_key(tmp_path: Path) -> None:
    data = dict(GOOD)
    del data["platform"]
    expected = r"^profiles/pc2.json: platform: missing \(required\): expected linux/amd64 or linux/arm64 \(or platforms"
    with pytest.raises(ConfigError, match=expected):
        load_one(tmp_path, data)


def test_invalid_json_names_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^profiles/pc2.json:3:\d+: invalid JSON"):
        load_one(tmp_path, '{\n  "platform": "linux/amd64",\n  oops\n}')


def test_base_override_local_and_by_role(tmp_path: Path) -> None:
    profiles = load_profiles(REPO / "profiles", root=REPO)
    local = apply_base_override(profiles, "local")
    assert all(p.base("python").is_local for p in local.values())
    by_role = apply_base_override(profiles, "python=registry.example/py:3@sha256:" + "a" * 64)
    assert by_role["mainpc"].base("python").ref.startswith("registry.example/py:3@")
    with pytest.raises(ConfigError, match="^--base-override: expected 'local' or ROLE=REF"):
        apply_base_override(profiles, "nonsense")


def test_platforms_make_one_index_whose_first_is_the_primary(tmp_path: Path) -> None:
    data = {k: v for k, v in GOOD.items() if k != "platform"}
    profile = load_one(tmp_path, {**data, "platforms": ["linux/amd64", "linux/arm64"]})
    assert profile.platforms == ("linux/amd64", "linux/arm64") and profile.platform == "linux/amd64"  # type: ignore[attr-defined]
    assert profile.multi_platform  # type: ignore[attr-defined]
    single = load_one(tmp_path, GOOD, name="cpu")
    assert single.platforms == ("linux/amd64",) and not single.multi_platform  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"platforms": ["linux/amd64"]}, "profiles/pc2.json: platforms: give platform (one) or platforms (several)"),
        ({"platform": None, "platforms": []}, "profiles/pc2.json: platforms: expected at least one"),
        ({"platform": None, "platforms": ["linux/s390x"]}, "profiles/pc2.json: platforms[0]: expected linux/amd64"),
        (
            {"platform": None, "platforms": ["linux/arm64", "linux/arm64"]},
            "profiles/pc2.json: platforms: each platform",
        ),
    ],
)
def test_platforms_errors(tmp_path: Path, change: dict[str, object], message: str) -> None:
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        load_one(tmp_path, data)
    assert str(err.value).startswith(message), str(err.value)
