"""Which key signs and which are trusted: the catalog's keys, the environment, the development pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config.keys import development_key, resolve_keys
from shipyard.config.registry import parse_registry
from shipyard.errors import ConfigError
from shipyard.oci.signing import SigningKey

LOCAL, GHCR = parse_registry("localhost:5000/shipyard"), parse_registry("ghcr.io/acme/ai-system")
PASSWORD = "correct horse battery staple"


@pytest.fixture
def release_key(tmp_path: Path) -> tuple[Path, Path, SigningKey]:
    key = SigningKey.generate()
    (tmp_path / "release.key").write_bytes(key.pem(PASSWORD.encode()))
    (tmp_path / "release.pub").write_bytes(key.public.pem())
    return tmp_path / "release.key", tmp_path / "release.pub", key


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"SHIPYARD_STATE_DIR": str(tmp_path / "state"), **extra}


def test_a_fresh_machine_signs_the_local_registry_with_its_development_key(tmp_path: Path) -> None:
    keys = resolve_keys((), LOCAL, environ=env(tmp_path), need_signer=True)
    assert keys.development and keys.signer is not None and keys.trusted == (keys.signer.public,)
    again = resolve_keys((), LOCAL, environ=env(tmp_path), need_signer=True)
    assert again.signer is not None and again.signer.public.key_id == keys.signer.public.key_id  # made once
    assert (tmp_path / "state" / "keys" / "development.key").stat().st_mode & 0o077 == 0


def test_the_demo_key_and_the_development_key_are_both_trusted_on_the_local_registry(
    tmp_path: Path, release_key
) -> None:  # type: ignore[no-untyped-def]
    _, public, key = release_key
    keys = resolve_keys((public,), LOCAL, environ=env(tmp_path), need_signer=True)
    assert keys.development and {k.key_id for k in keys.trusted} == {key.public.key_id, keys.signer.public.key_id}  # type: ignore[union-attr]


def test_another_registry_needs_trusted_keys_and_a_real_key(tmp_path: Path, release_key) -> None:  # type: ignore[no-untyped-def]
    private, public, key = release_key
    with pytest.raises(ConfigError, match=r"^registry ghcr.io: shipyard.toml \[project\] names no trusted_keys"):
        resolve_keys((), GHCR, environ=env(tmp_path))
    with pytest.raises(ConfigError, match=r"^SHIPYARD_SIGNING_KEY \(or SHIPYARD_SIGNING_KEY_PEM\) is not set"):
        resolve_keys((public,), GHCR, environ=env(tmp_path), need_signer=True)
    assert resolve_keys((public,), GHCR, environ=env(tmp_path)).signer is None  # verifying needs no private key
    good = env(tmp_path, SHIPYARD_SIGNING_KEY=str(private), SHIPYARD_SIGNING_KEY_PASSWORD=PASSWORD)
    signer = resolve_keys((public,), GHCR, environ=good, need_signer=True).signer
    assert signer is not None and signer.public.key_id == key.public.key_id
    as_pem = env(tmp_path, SHIPYARD_SIGNING_KEY_PEM=private.read_text(), SHIPYARD_SIGNING_KEY_PASSWORD=PASSWORD)
    assert resolve_keys((public,), GHCR, environ=as_pem, need_signer=True).signer is not None


def test_refusals_name_the_variable_and_never_the_key(tmp_path: Path, release_key) -> None:  # type: ignore[no-untyped-def]
    private, public, _ = release_key
    wrong = env(tmp_path, SHIPYARD_SIGNING_KEY=str(private), SHIPYARD_SIGNING_KEY_PASSWORD="nope")
    with pytest.raises(ConfigError) as error:
        resolve_keys((public,), GHCR, environ=wrong, need_signer=True)
    assert str(error.value).startswith("SHIPYARD_SIGNING_KEY: wrong password") and "nope" not in str(error.value)
    dev = development_key(tmp_path / "state")
    (tmp_path / "dev.key").write_bytes(dev.pem(b"pw"))
    (tmp_path / "dev.pub").write_bytes(dev.public.pem())
    dev_env = env(tmp_path, SHIPYARD_SIGNING_KEY=str(tmp_path / "dev.key"), SHIPYARD_SIGNING_KEY_PASSWORD="pw")
    with pytest.raises(ConfigError, match="the development key signs for the local registry only, not ghcr.io"):
        resolve_keys((tmp_path / "dev.pub",), GHCR, environ=dev_env, need_signer=True)
    other = SigningKey.generate()
    (tmp_path / "other.key").write_bytes(other.pem(b"pw"))
    other_env = env(tmp_path, SHIPYARD_SIGNING_KEY=str(tmp_path / "other.key"), SHIPYARD_SIGNING_KEY_PASSWORD="pw")
    with pytest.raises(ConfigError, match="is not one of shipyard.toml's \\[project\\] trusted_keys"):
        resolve_keys((public,), GHCR, environ=other_env, need_signer=True)
    for message in (str(error.value),):
        assert "PRIVATE KEY" not in message
