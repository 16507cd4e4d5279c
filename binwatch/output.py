"""What the CLI prints. Rich cuts a line at 80 columns when it cannot ask a terminal its width, so
a table or a `file:line:` error piped into grep, a log or a test came out cut; and a console made
at import time keeps the width of that moment. Here a console is made when printing, as wide as
its terminal, and as wide as its lines when the output is not a terminal (whatever COLUMNS
says). Errors are printed as text, not markup: a message that contains `[…]` (a pydantic
location, a topic filter) is shown as it is instead of breaking the print."""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

# Wide enough for any line binwatch prints; Rich lays a table out to its content, not this width.
_PIPED_WIDTH = 10_000


def console(*, stderr: bool = False) -> Console:
    """A console on stdout (or stderr) as it is now."""
    stream = sys.stderr if stderr else sys.stdout
    # Piped, COLUMNS is not this output's width (pytest-xdist, for one, sets it to 80).
    return Console(stderr=stderr, width=None if stream.isatty() else _PIPED_WIDTH)


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
