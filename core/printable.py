"""Text from outside, made safe to show and to store: a bin's JSON keys quoted in a dead
letter's detail, a webhook receiver's answer quoted in an error, names from the fleet file.

Its control characters (C0 and C1, line breaks and ESC among them) are written as the escapes
Python writes them in (`\\x00`, `\\n`, `\\x1b`), everything else kept, Chinese included. A NUL
is refused by PostgreSQL's text; a line break forges lines of a log or a table; an ESC
sequence reaches a terminal as a command."""

from __future__ import annotations

import re
from typing import Final

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_controls(text: str) -> str:
    """`text` with each control character written as its escape."""
    return _CONTROL.sub(lambda found: repr(found[0])[1:-1], text)
