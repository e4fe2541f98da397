"""``shipyard keygen``, its options, help and handler: a release signing key pair, the private half
encrypted, never shown; and the key's password for the verbs that sign."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ..config.keys import PASSWORD_ENV
from ..errors import ConfigError
from ..oci.signing import SigningKey
from ..state import make_dirs
from .console import Console
from .options import Arguments, Option
from .verb import Verb


def read_password(confirm: bool) -> bytes:
    """The key's password: SHIPYARD_SIGNING_KEY_PASSWORD, else a prompt on a terminal (never echoed)."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV].encode()
    if not sys.stdin.isatty():
        raise ConfigError(f"{PASSWORD_ENV} is not set and there is no terminal to ask for the key's password")
    first = getpass.getpass("password for the signing key: ")
    if confirm and getpass.getpass("again: ") != first:
        raise ConfigError("keygen: the two passwords differ; nothing was written")
    if not first:
        raise ConfigError("keygen: an empty password; a private key is never written in the clear")
    return first.encode()


def key_password() -> bytes:
    """The signing key's password when SHIPYARD_SIGNING_KEY_PASSWORD does not give it: asked once."""
    return read_password(confirm=False)


@dataclass(frozen=True, kw_only=True)
class KeygenArgs(Arguments):
    output: Path


def cmd_keygen(args: KeygenArgs, console: Console) -> int:
    private, public = args.output.with_name(args.output.name + ".key"), args.output.with_name(args.output.name + ".pub")
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing:
        raise ConfigError(f"--output: {', '.join(existing)} exists; keygen never overwrites a key")
    password = read_password(confirm=True)
    key = SigningKey.generate()
    make_dirs(private.resolve().parent)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.pem(password))
    public.write_bytes(key.public.pem())
    console.line(f"wrote {private} (encrypted, mode 0600: keep it secret) and {public} (key {key.public.key_id})")
    console.line(
        f'trust it: [project] trusted_keys = ["{public}"] in shipyard.toml; sign with SHIPYARD_SIGNING_KEY={private}'
    )
    return 0


VERBS = (
    Verb(
        "keygen",
        help="write a signing key pair: PREFIX.key (ECDSA P-256, encrypted) and PREFIX.pub (trust it in shipyard.toml)",
        example="shipyard keygen --output keys/release",
        args=KeygenArgs,
        run=cmd_keygen,
        options=(
            Option(("--output",), type=Path, required=True, metavar="PREFIX", help="writes PREFIX.key and PREFIX.pub"),
        ),
    ),
)
