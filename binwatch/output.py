"""What the CLI prints. Rich cuts a line at 80 columns when it cannot ask a terminal its width, so
a table or a `file:line:` error piped into grep, a log or a test came out cut; and a console made
at import time keeps the width of that moment. Here a console is made when printing, as wide as
its terminal, and as wide as its lines when the output is not a terminal (whatever COLUMNS
says). Errors are printed as text, not markup: a message that contains `[…]` (a pydantic
location, a topic filter) is shown as it is instead of breaking the print; so are the cells
of every table (`PlainTable`), which show what bins and files sent."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from core.printable import escape_controls

# Wide enough for any line binwatch prints; Rich lays a table out to its content, not this width.
_PIPED_WIDTH = 10_000


# The stderr console a live status line is drawn on, while one is (`live_status`).
_live: Console | None = None


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) as it is now; on stderr, the live status line's while
    one is drawn."""
    if stderr and _live is not None:
        return _live
    stream = sys.stderr if stderr else sys.stdout
    # Piped, COLUMNS is not this output's width (pytest-xdist, for one, sets it to 80).
    return Console(stderr=stderr, width=None if stream.isatty() else _PIPED_WIDTH)


@contextmanager
def live_status(status: Console) -> Iterator[Live]:
    """A status line redrawn in place on `status` (stderr), above which what `say` and `error`
    print meanwhile, from any thread, comes on lines of its own. A console of their own writes
    to the terminal itself (Rich unwraps Live's redirection), so a line said by another thread
    ran on from the end of the status line: `rejected      0planned op-jiejing's day …`."""
    global _live
    with Live(console=status, auto_refresh=False) as live:
        _live = status
        try:
            yield live
        finally:
            _live = None


def plain(value: object) -> Text:
    """`value` as it is: never read as markup, and its control characters written as escapes.
    What the tables show comes from outside (a dead letter's detail quotes the JSON key a bin
    sent, names come from the fleet file): `[/x]` in it stopped the command with a MarkupError,
    `[link=…]` drew a link, and an ESC sequence reached the terminal (its title, the screen)."""
    return Text(escape_controls(str(value)))


class PlainTable(Table):
    """A Rich table whose text cells and title are `plain`."""

    def __init__(self, *headers: str, title: str | None = None, **options: Any) -> None:
        super().__init__(*headers, title=None if title is None else plain(title), **options)

    def add_row(
        self,
        *renderables: RenderableType | None,
        style: Any = None,
        end_section: bool = False,
    ) -> None:
        cells = [plain(cell) if isinstance(cell, str) else cell for cell in renderables]
        super().add_row(*cells, style=style, end_section=end_section)


def error(message: object) -> None:
    """An error on stderr, in red on a terminal, never read as markup."""
    console(stderr=True).print(str(message), style="red", markup=False, highlight=False)


def fail(message: object) -> NoReturn:
    """An error, and exit status 1."""
    error(message)
    raise typer.Exit(1)


def say(*objects: object, **options: object) -> None:
    """What a long-running command tells about itself, on stderr (stdout stays for results)."""
    console(stderr=True).print(*objects, **options)  # type: ignore[arg-type]


def stdin_line(what: str, how: str) -> str:
    """One line of standard input (a password, a secret) without its line end. None there (an
    empty line, or nothing: `< /dev/null`, a pipe from a variable never set) ends the command
    saying so and `how` to give one: it was refused as a value too short ("a password needs at
    least 10 characters"), which sent people looking for the length rule."""
    line = sys.stdin.readline().rstrip("\r\n")
    if not line.strip():
        fail(f"no {what} on standard input: {how}")
    return line
