"""Release records: what older records hold, and finding a record by its release tag or a semver alias."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shipyard.errors import ConfigError
from shipyard.record import (
    ModelFileRecord,
    ModelRecord,
    ReleaseRecord,
    UnitRecord,
    find_record,
    load_record,
    records_dir,
    save_record,
)


def release(root: Path, tag: str, created: str, aliases: tuple[str, ...] = (), *, mtime: int = 0) -> Path:
    record = ReleaseRecord(
        release=tag, revision=tag[-8:], created=created, registry="localhost:5000/s", aliases=list(aliases)
    )
    path = save_record(root, record)
    if mtime:
        os.utime(path, (mtime, mtime))
    return path


def test_a_record_written_before_aliases_loads_with_none(tmp_path: Path) -> None:
    path = release(tmp_path, "20250111-aaaaaaaa", "2025-01-11T12:00:00Z", ("1.4.2", "1.4"))
    data = json.loads(path.read_text())
    assert data["aliases"] == ["1.4.2", "1.4"]
    del data["aliases"]
    path.write_text(json.dumps(data))
    assert load_record(path).aliases == []


def test_an_alias_names_the_newest_release_that_lists_it(tmp_path: Path) -> None:
    old = release(tmp_path, "20250111-aaaaaaaa", "2025-01-11T12:00:00Z", ("1.4.2", "1.4"), mtime=3000)
    new = release(tmp_path, "20250112-bbbbbbbb", "2025-01-12T12:00:00Z", ("1.4.3", "1.4"), mtime=1000)
    release(tmp_path, "20250113-cccccccc", "2025-01-13T12:00:00Z", mtime=2000)  # newer, no alias
    (records_dir(tmp_path) / "20250114-dddddddd.json").write_text("{not json")  # unreadable: names nothing
    # newest by commit date: verify, scan and canary rewrite a record (here: the old one, last)
    assert find_record(tmp_path, "1.4") == new
    assert find_record(tmp_path, "1.4.2") == old
    assert find_record(tmp_path, "1.4.3") == new
    assert find_record(tmp_path, "20250111-aaaaaaaa") == old  # a release tag is still a file name


def test_a_release_tag_wins_over_an_alias_of_the_same_name(tmp_path: Path) -> None:
    named = release(tmp_path, "1.4", "2025-01-11T12:00:00Z")
    release(tmp_path, "20250112-bbbbbbbb", "2025-01-12T12:00:00Z", ("1.4.3", "1.4"))
    assert find_record(tmp_path, "1.4") == named


def test_neither_a_release_nor_an_alias_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    release(tmp_path, "20250111-aaaaaaaa", "2025-01-11T12:00:00Z", ("1.4.2", "1.4"))
    with pytest.raises(ConfigError) as error:
        find_record(tmp_path, "1.5", flag="RELEASE")
    message = str(error.value)
    assert message.startswith("RELEASE 1.5: no release record ") and "nor one with the alias 1.5" in message
    assert message.endswith("known: 20250111-aaaaaaaa") and "\n" not in message
    with pytest.raises(ConfigError, match=r"run `shipyard build` first"):
        find_record(tmp_path / "empty", "1.4")


def model_record() -> ModelRecord:
    weights = ModelFileRecord("weights.safetensors", "sha256:" + "1" * 64, 1000)
    config = ModelFileRecord("config.json", "sha256:" + "2" * 64, 20)
    return ModelRecord(
        repository="localhost:5000/s/models/affect-nb",
        tag="20250111-aaaaaaaa",
        digest="sha256:" + "3" * 64,
        format="safetensors",
        files=[config, weights],
        size=1020,
        source="path",
        origin="models/affect-nb",
    )


def unit(**extra: object) -> dict[str, object]:
    return {
        "profile": "cpu", "image": "svc", "kind": "service", "platform": "linux/amd64",
        "repository": "localhost:5000/s/cpu/svc", "tag": "20250111-aaaaaaaa", "digest": "sha256:" + "4" * 64,
        "size": 1, "parent": "p@sha256:" + "5" * 64, "duration_s": 1.0, "steps": 1, "cache_hits": 0, **extra,
    }  # fmt: skip


def test_models_and_the_digests_a_unit_was_released_with_round_trip(tmp_path: Path) -> None:
    record = ReleaseRecord(release="20250111-aaaaaaaa", revision="a" * 40, created="c", registry="localhost:5000/s")
    record.models["affect-nb"] = model_record()
    record.units["cpu/svc"] = UnitRecord(**unit(models={"affect-nb": "sha256:" + "3" * 64}))  # type: ignore[arg-type]
    path = save_record(tmp_path, record)
    data = json.loads(path.read_text())
    assert data["models"]["affect-nb"] == {
        "repository": "localhost:5000/s/models/affect-nb",
        "tag": "20250111-aaaaaaaa",
        "digest": "sha256:" + "3" * 64,
        "format": "safetensors",
        "files": [
            {"path": "config.json", "digest": "sha256:" + "2" * 64, "size": 20},
            {"path": "weights.safetensors", "digest": "sha256:" + "1" * 64, "size": 1000},
        ],
        "size": 1020,
        "source": "path",
        "origin": "models/affect-nb",
        "budget_mb": None,
        "verdicts": {},
    }
    assert data["units"]["cpu/svc"]["models"] == {"affect-nb": "sha256:" + "3" * 64}
    loaded = load_record(path)
    assert loaded == record and loaded.to_json() == record.to_json()
    assert loaded.models["affect-nb"].ref == "localhost:5000/s/models/affect-nb@sha256:" + "3" * 64


def test_a_record_written_before_models_loads_with_none(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps(
            {
                "release": "r",
                "revision": "a",
                "created": "c",
                "registry": "h/s",
                "schema": 1,
                "units": {"cpu/svc": unit()},
            }
        )
    )
    record = load_record(path)
    assert record.models == {} and record.units["cpu/svc"].models == {}


def test_a_model_without_its_files_is_not_a_record(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    data = json.loads(model_record_json())
    del data["models"]["affect-nb"]["files"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"bad.json: not a shipyard release record"):
        load_record(path)


def model_record_json() -> str:
    record = ReleaseRecord(release="r", revision="a", created="c", registry="h/s", models={"affect-nb": model_record()})
    return record.to_json()


def test_verdicts_are_typed_and_round_trip_what_they_do_not_model(tmp_path: Path) -> None:
    """A key a newer shipyard wrote is kept; a key an older one did not write is not added; a gate this
    shipyard does not know stays as it was."""
    data = json.loads(model_record_json())
    data["units"] = {"cpu/svc": unit()}
    data["units"]["cpu/svc"]["verdicts"] = {
        "verify": {"passed": True, "failed": []},  # before verdicts named platforms
        "scan": {"passed": False, "blocking": ["CVE-1"], "epss": {"CVE-1": 0.9}},  # a field of a newer shipyard
        "sbom": {"passed": True},  # a gate of a newer shipyard
    }
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    verdicts = load_record(path).units["cpu/svc"].verdicts
    assert verdicts.verify is not None and verdicts.verify.passed and verdicts.verify.platforms is None
    assert verdicts.scan is not None and verdicts.scan.blocking == ["CVE-1"] and verdicts.scan.counts == {}
    assert verdicts.scan.extra == {"epss": {"CVE-1": 0.9}} and verdicts.canary is None
    again = json.loads(load_record(path).to_json())
    assert again["units"]["cpu/svc"]["verdicts"] == data["units"]["cpu/svc"]["verdicts"]


def test_a_verdict_made_here_has_every_field() -> None:
    from shipyard.verdicts import VerifyPlatform, VerifyVerdict

    made = VerifyVerdict(False, ["user"], {"linux/amd64": VerifyPlatform(False, ["user"])})
    assert made.to_dict() == {
        "passed": False,
        "failed": ["user"],
        "platforms": {"linux/amd64": {"passed": False, "failed": ["user"]}},
    }


def test_a_verdict_that_is_not_a_mapping_is_not_a_record(tmp_path: Path) -> None:
    data = json.loads(model_record_json())
    data["units"] = {"cpu/svc": unit() | {"verdicts": {"verify": ["passed"]}}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"bad.json: not a shipyard release record"):
        load_record(path)
