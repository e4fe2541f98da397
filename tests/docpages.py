"""The README and the manual's pages as the docs tests read them: text, code blocks, command lines."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
PAGES = {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8") for path in sorted(DOCS.rglob("*.md"))}


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def command_lines() -> list[list[str]]:
    """The arguments of every `shipyard …` line in a code block of the README or a page (a trailing
    comment, `VAR=value` before it and what follows `&&`, `|` or `>` left out)."""
    found = []
    for block in [b for text in (README, *PAGES.values()) for b in code_blocks(text)]:
        for line in block.splitlines():
            for part in re.split(r"\s(?:&&|\||>)\s", line.split(" #", 1)[0].strip()):
                if not re.match(r"^(?:[A-Z_]+=\S*\s+)*shipyard\b", part):
                    continue  # not a command line of shipyard (a tree, a picture, another tool)
                words = shlex.split(part)
                while words and re.match(r"^[A-Z_]+=", words[0]):
                    words.pop(0)
                if words[:1] == ["shipyard"]:
                    found.append(words[1:])
    return found
