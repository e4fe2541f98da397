"""Typed reading of JSON/TOML documents with errors that name the file and the key.

A ``Table`` wraps one mapping of a document together with where it came from, so every
error reads like ``profiles/pc2.json: build_args.CUDA_ARCH: expected a string, got 8.6``.
Unknown keys are refused with a "did you mean …?" hint.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError

T = TypeVar("T")

_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


def describe(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | type(None)) else type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_document(path: Path, *, display: str | None = None) -> Table:
    """Parse a ``.json`` or ``.toml`` file into a ``Table``; syntax errors name file and line."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{shown}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}", file=shown, line=exc.lineno
        ) from None
    except tomllib.TOMLDecodeError as exc:
        at = re.search(r"\(at line (\d+)", str(exc))
        raise ConfigError(f"{shown}: invalid TOML: {exc}", file=shown, line=int(at[1]) if at else None) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: expected a table at the top level, got {describe(data)}", file=shown, line=1)
    return Table(data, shown, "", text)


def locate(text: str, path: str) -> int | None:
    """Best-effort 1-based line of ``path`` (``a.b[0].c``) in a JSON or TOML document, for annotations.

    Each key is looked for from where its parent was found (``"key":``, ``key =``, ``[a.key]``); a key that
    is not there (a missing required key) gives its parent's line; None when not even the first is found.
    """
    lines = text.splitlines()
    start, found = 0, None
    for part in re.sub(r"\[\d+\]", "", path).split("."):
        if not part:
            continue
        key = re.compile(rf'(?:^|[\s{{,."\[])"?{re.escape(part)}"?\s*(?:[:=.\]])')
        hit = next((i for i in range(start, len(lines)) if key.search(lines[i])), None)
        if hit is None:
            break
        start, found = hit, hit + 1
    return found


@dataclass(frozen=True)
class Table:
    data: Mapping[str, Any]
    file: str
    prefix: str
    text: str = field(default="", repr=False, compare=False)  # the document's source, to locate keys

    def where(self, key: str | None = None) -> str:
        path = ".".join(p for p in (self.prefix, key or "") if p)
        return f"{self.file}: {path}" if path else self.file

    def error(self, key: str | None, message: str) -> ConfigError:
        path = ".".join(p for p in (self.prefix, key or "") if p)
        return ConfigError(f"{self.where(key)}: {message}", file=self.file, line=locate(self.text, path) or None)

    def only(self, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in self.data:
            if key not in allowed:
                raise self.error(key, f"unknown key{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")

    def _typed(self, key: str, value: Any, kind: type[T]) -> T:
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # type: ignore[return-value]
        if not ok:
            raise self.error(key, f"expected {_TYPE_NAMES.get(kind, kind.__name__)}, got {describe(value)}")
        return value  # type: ignore[no-any-return]

    def req(self, key: str, kind: type[T], *, expected: str | None = None) -> T:
        """A required key; ``expected`` says what it should hold when it is missing (default: its type)."""
        if key not in self.data:
            raise self.error(key, f"missing (required): expected {expected or _TYPE_NAMES.get(kind, kind.__name__)}")
        return self._typed(key, self.data[key], kind)

    def opt(self, key: str, kind: type[T], default: T) -> T:
        if key not in self.data:
            return default
        return self._typed(key, self.data[key], kind)

    def table(self, key: str, *, required: bool = False) -> Table:
        if key not in self.data:
            if required:
                raise self.error(key, f"missing (required): expected a [{self._join(key)}] table")
            return Table({}, self.file, self._join(key), self.text)
        return Table(self._typed(key, self.data[key], dict), self.file, self._join(key), self.text)

    def str_map(self, key: str) -> dict[str, str]:
        """A table whose values are all strings (build args, env)."""
        sub = self.table(key)
        return {name: sub._typed(name, value, str) for name, value in sub.data.items()}

    def int_map(self, key: str) -> dict[str, int]:
        """A table whose values are all integers (ports by service)."""
        sub = self.table(key)
        return {name: sub._typed(name, value, int) for name, value in sub.data.items()}

    def str_list(self, key: str, default: list[str] | None = None) -> list[str]:
        if key not in self.data:
            return list(default or [])
        items = self._typed(key, self.data[key], list)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(f"{key}[{i}]", f"expected a string, got {describe(item)}")
        return list(items)

    def _join(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key
