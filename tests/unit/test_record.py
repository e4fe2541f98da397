"""Release records: what older records hold, and finding a record by its release tag or a semver alias."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from shipyard.errors import ConfigError
from shipyard.record import ReleaseRecord, find_record, load_record, records_dir, save_record


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
