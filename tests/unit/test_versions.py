"""Records and ledgers say which shipyard wrote them; an older schema is read, a newer one refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipyard import __version__
from shipyard.config.registry import parse_registry
from shipyard.errors import ConfigError
from shipyard.oci.artifacts import push_document
from shipyard.oci.client import RegistryClient
from shipyard.record import SCHEMA, ReleaseRecord, load_record, save_record
from shipyard.release.channels.ledger import LEDGER_SCHEMA, ledger_repository, load_ledger
from shipyard.release.deploy.deployments import deployments_repository, load_deployments
from shipyard.report.model import record_origin
from tests.memregistry import MemoryRegistry


def record() -> ReleaseRecord:
    return ReleaseRecord(release="20250111-aaaaaaaa", revision="a" * 40, created="c", registry="localhost:5000/s")


def test_a_record_says_its_schema_and_who_wrote_it(tmp_path: Path) -> None:
    data = json.loads(save_record(tmp_path, record()).read_text())
    assert (data["schema"], data["written_by"]) == (SCHEMA, f"shipyard {__version__}") and SCHEMA == 2


def test_a_schema_1_record_is_read_and_shown_as_such(tmp_path: Path) -> None:
    path = save_record(tmp_path, record())
    data = json.loads(path.read_text())
    for key in ("written_by", "aliases", "models"):
        del data[key]
    path.write_text(json.dumps(data | {"schema": 1}))
    old = load_record(path)
    assert (old.schema, old.written_by, old.aliases, old.models) == (1, "", [], {})
    assert record_origin(old) == "record schema 1, written by an older shipyard"  # the report's line


def test_a_record_of_a_newer_schema_is_refused_naming_both(tmp_path: Path) -> None:
    path = save_record(tmp_path, record())
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"schema": 3, "written_by": "shipyard 9.0.0", "wormholes": {}}))
    with pytest.raises(ConfigError) as raised:
        load_record(path)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message
    assert "schema 3 (written by shipyard 9.0.0)" in message and f"reads schema {SCHEMA} and older" in message


def test_ledgers_of_a_newer_schema_are_refused_and_old_ones_read() -> None:
    memory = MemoryRegistry()
    client = RegistryClient(parse_registry("localhost:5000/acme"), transport=memory.transport())
    push_document(
        client,
        ledger_repository("acme"),
        "stable",
        json.dumps({"channel": "stable", "entries": []}).encode(),
        media_type="application/json",
    )
    assert load_ledger(client, "acme", "stable").entries == []  # schema 1: no field at all
    newer = {"channel": "stable", "entries": [], "schema": LEDGER_SCHEMA + 1, "written_by": "shipyard 9.0.0"}
    push_document(
        client, ledger_repository("acme"), "stable", json.dumps(newer).encode(), media_type="application/json"
    )
    with pytest.raises(ConfigError, match=r"channel ledger of schema 3 \(written by shipyard 9.0.0\)"):
        load_ledger(client, "acme", "stable")
    push_document(
        client,
        deployments_repository("acme"),
        "t",
        json.dumps({"target": "t", "entries": [], "schema": 7}).encode(),
        media_type="application/json",
    )
    with pytest.raises(ConfigError, match=r"deployment ledger of schema 7 \(written by a newer shipyard\)"):
        load_deployments(client, "acme", "t")
