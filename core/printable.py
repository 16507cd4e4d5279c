"""Text from outside, made safe to show and to store: a bin's JSON keys quoted in a dead
letter's detail, a webhook receiver's answer quoted in an error, names from the fleet file;
and what people type (a note, a display name) checked for control characters, which no
screen, PDF or chat shows.

Its control characters (C0 and C1, line breaks and ESC among them) are written as the escapes
Python writes them in (`\\x00`, `\\n`, `\\x1b`), everything else kept, Chinese included. A NUL
is refused by PostgreSQL's text; a line break forges lines of a log or a table; an ESC
sequence reaches a terminal as a command."""

from __future__ import annotations

import re
from typing import Final

CONTROLS: Final = r"\x00-\x1f\x7f-\x9f"  # Unicode's Cc (C0, DEL, C1), inside a [] class
_CONTROL: Final = re.compile(f"[{CONTROLS}]")


def escape_controls(text: str) -> str:
    """`text` with each control character written as its escape, and each lone UTF-16
    surrogate (`\\ud800`, which JSON's escapes can carry and no UTF-8 text can hold: SQLite
    and PostgreSQL both refuse to store it) too."""
    escaped = _CONTROL.sub(lambda found: repr(found[0])[1:-1], text)
    if escaped.isascii():
        return escaped
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


def control_character(text: str, *, lines: bool = True) -> str | None:
    """What to fix when `text` holds a control character, or None; tabs and line breaks are
    allowed when `lines` (a browser sends a textarea's line breaks as CR LF)."""
    for found in _CONTROL.finditer(text):
        if not (lines and found[0] in "\t\n\r"):
            return (
                f"holds a control character, {repr(found[0])[1:-1]}, at character"
                f" {found.start() + 1}: remove it"
            )
    return None


def check_text(text: str) -> str:
    """A typed text of one or more lines (a note), or ValueError saying what to fix."""
    if problem := control_character(text):
        raise ValueError(problem)
    return text
