"""Which key signs (``SHIPYARD_SIGNING_KEY`` or ``SHIPYARD_SIGNING_KEY_PEM``) and which public keys are
trusted (``[project] trusted_keys``); on the embedded local registry only, a development key pair made
once in the state directory."""

from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..oci.reference import RegistryNamespace
from ..oci.signing import BadKey, PublicKey, SigningKey

KEY_ENV, PEM_ENV, PASSWORD_ENV = "SHIPYARD_SIGNING_KEY", "SHIPYARD_SIGNING_KEY_PEM", "SHIPYARD_SIGNING_KEY_PASSWORD"
Password = Callable[[], bytes | None]


@dataclass(frozen=True)
class Keys:
    signer: SigningKey | None  # None: nothing configured to sign with (verifying still works)
    trusted: tuple[PublicKey, ...]
    development: bool = False  # the state directory's development pair, for the local registry only

    def trusts(self, key_id: str) -> bool:
        return any(k.key_id == key_id for k in self.trusted)


def machine_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The machine's shipyard state (the bootstrap scripts' too)."""
    if environ.get("SHIPYARD_STATE_DIR"):
        return Path(environ["SHIPYARD_STATE_DIR"])
    base = Path(environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "shipyard"


def is_local(target: RegistryNamespace) -> bool:
    return target.is_local


def resolve_keys(
    trusted_keys: Sequence[Path],
    target: RegistryNamespace,
    *,
    environ: Mapping[str, str] = os.environ,
    password: Password | None = None,
    need_signer: bool = False,
) -> Keys:
    """The keys for work against ``target``; a ConfigError naming the variable or key when they do not fit.

    On the local registry the development key is trusted beside ``trusted_keys`` and signs when no key
    is given, so a fresh clone works with no secret; anywhere else only ``trusted_keys`` count and the
    signing key must be one of them."""
    trusted = tuple(_public(path) for path in trusted_keys)
    signer = _signer_from_env(environ, password)
    if is_local(target):
        development = signer is None
        machine = machine_state_dir(environ)
        dev = development_key(machine) if development else _existing_development_key(machine)
        signer = signer or dev
        extra = (dev.public,) if dev is not None and not any(k.key_id == dev.public.key_id for k in trusted) else ()
        trusted = (*trusted, *extra)
        if signer is not None and not any(k.key_id == signer.public.key_id for k in trusted):
            raise ConfigError(_untrusted(signer))
        return Keys(signer, trusted, development)
    if not trusted:
        raise ConfigError(
            f"registry {target.host}: shipyard.toml [project] names no trusted_keys; signatures are trusted "
            f"by key, and the development key is for the local registry only: make a release key pair "
            f'(shipyard keygen --output keys/release) and add trusted_keys = ["keys/release.pub"]'
        )
    if signer is not None:
        dev = _existing_development_key(machine_state_dir(environ))
        if dev is not None and dev.public.key_id == signer.public.key_id:
            raise ConfigError(f"{KEY_ENV}: the development key signs for the local registry only, not {target.host}")
        if not any(k.key_id == signer.public.key_id for k in trusted):
            raise ConfigError(_untrusted(signer))
    elif need_signer:
        raise ConfigError(
            f"{KEY_ENV} (or {PEM_ENV}) is not set: signing for {target.host} needs the private key of one of "
            f"shipyard.toml's [project] trusted_keys (and {PASSWORD_ENV})"
        )
    return Keys(signer, trusted, False)


def _untrusted(signer: SigningKey) -> str:
    return (
        f"{KEY_ENV}: the signing key ({signer.public.key_id[:19]}…) is not one of shipyard.toml's [project] "
        f"trusted_keys; what it signs would not be trusted"
    )


def _public(path: Path) -> PublicKey:
    try:
        return PublicKey.from_pem(path.read_bytes())
    except FileNotFoundError:
        raise ConfigError(
            f"shipyard.toml: [project] trusted_keys: no such file: {path} (make a pair with `shipyard keygen`)"
        ) from None
    except (OSError, BadKey) as exc:
        raise ConfigError(f"shipyard.toml: [project] trusted_keys: {path.name}: {exc}") from None


def _signer_from_env(environ: Mapping[str, str], password: Password | None) -> SigningKey | None:
    if environ.get(PEM_ENV):
        data, where = environ[PEM_ENV].encode(), PEM_ENV
    elif environ.get(KEY_ENV):
        try:
            data, where = Path(environ[KEY_ENV]).read_bytes(), KEY_ENV
        except OSError as exc:
            raise ConfigError(f"{KEY_ENV}: cannot read the key file ({exc.strerror})") from None
    else:
        return None
    secret = environ.get(PASSWORD_ENV, "").encode() or (password() if password else None)
    try:
        return SigningKey.from_pem(data, secret)
    except BadKey as exc:
        raise ConfigError(f"{where}: {exc} (the password comes from {PASSWORD_ENV})") from None


def development_key(directory: Path) -> SigningKey:
    """The development key pair of this machine, made on first use (private key 0600, encrypted with a
    random password kept beside it, 0600 too)."""
    existing = _existing_development_key(directory)
    if existing is not None:
        return existing
    keys = directory / "keys"
    keys.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(keys / ".lock", "w") as lock:  # two first runs at once make one pair, not two
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _existing_development_key(directory) or _write_development_key(keys)


def _write_development_key(keys: Path) -> SigningKey:
    key, password = SigningKey.generate(), secrets.token_urlsafe(32).encode()
    for name, data in (("development.password", password), ("development.key", key.pem(password))):
        fd = os.open(keys / f".{name}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(keys / f".{name}.tmp", keys / name)
    (keys / "development.pub").write_bytes(key.public.pem())
    return key


def _existing_development_key(directory: Path) -> SigningKey | None:
    keys = directory / "keys"
    try:
        return SigningKey.from_pem(
            (keys / "development.key").read_bytes(), (keys / "development.password").read_bytes()
        )
    except FileNotFoundError:
        return None
    except (OSError, BadKey) as exc:
        raise ConfigError(f"{keys}/development.key: {exc}; remove the keys directory to make a new pair") from None
