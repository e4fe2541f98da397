"""Which shipyard wrote a record or a ledger, and the refusal of one written for a newer shipyard.

Every document shipyard keeps (the release record, the channel and deployment ledgers) carries a
``schema`` number and ``written_by`` (``shipyard <version>``). A document of an older schema is read
(its missing fields take their defaults, and it is shown as that schema); one of a newer schema than this
shipyard knows is refused with one line naming both, never misread.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .errors import ConfigError


def writer() -> str:
    """What ``written_by`` says of this shipyard."""
    return f"shipyard {__version__}"


def check_schema(data: dict[str, Any], known: int, what: str, source: str) -> int:
    """The document's schema (1 where it has none: written before documents had one); a ConfigError when
    it is newer than ``known``."""
    found = data.get("schema", 1)
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise ConfigError(f"{source}: {what} schema {found!r} is not a schema number")
    if found > known:
        by = data.get("written_by") or "a newer shipyard"
        raise ConfigError(
            f"{source}: {what} of schema {found} (written by {by}); this {writer()} reads schema {known} and "
            f"older: upgrade shipyard to read it"
        )
    return found
