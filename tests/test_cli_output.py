"""What `binwatch` prints, run as a user runs it (a subprocess, on each registry backend): a
command's own output without the migration tool's or the driver's chatter, and errors that name
ids as text, never as a Python list."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer
from rich.table import Table

from binwatch.output import console, fail
from core.errors import no_such


def _binwatch(registry_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BINWATCH_DATABASE_URL": registry_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "binwatch", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_commands_print_no_alembic_lines_unless_verbose(registry_url: str) -> None:
    quiet = _binwatch(registry_url, "keys", "list")
    assert quiet.returncode == 0, quiet.stderr
    assert "alembic" not in quiet.stdout + quiet.stderr
    assert quiet.stderr == ""
    verbose = _binwatch(registry_url, "-v", "keys", "list")
    assert verbose.returncode == 0, verbose.stderr
    assert "alembic.runtime.migration" in verbose.stderr


@pytest.mark.parametrize(
    ("sites", "message"),
    [(["x"], "no site with id 'x'"), (["y", "x"], "no sites with ids 'x', 'y'")],
)
def test_unknown_sites_are_named_not_listed(
    registry_url: str, sites: list[str], message: str
) -> None:
    options = [part for site in sites for part in ("--site", site)]
    refused = _binwatch(
        registry_url, "keys", "create", "--role", "manager", "--name", "m", *options
    )
    assert refused.returncode == 1
    assert refused.stderr.strip() == message
    assert "[" not in refused.stderr


def test_no_such_quotes_each_id() -> None:
    assert no_such("bin", {"a"}) == "no bin with id 'a'"
    assert no_such("bin", ["b", "a", "c"]) == "no bins with ids 'a', 'b', 'c'"


def test_piped_output_is_whole_lines_and_errors_are_text(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Piped, a long table row and a `file:line:` error come out on one line each, whatever
    COLUMNS says (pytest-xdist sets 80); an error's brackets are text."""
    monkeypatch.setenv("COLUMNS", "80")
    path = "/tmp/" + "a-long-folder-name/" * 8 + "fleet.yaml"
    table = Table("bin", "detail")
    table.add_row("bin-a", "fill_pct of bin-a " + "x" * 150)
    console().print(table)
    with pytest.raises(typer.Exit) as exited:
        fail(f"{path}:15: sites[0].bins[/]: unknown [red]stream[/red]")
    assert exited.value.exit_code == 1
    out, err = capsys.readouterr()
    assert "fill_pct of bin-a " + "x" * 150 in out
    assert err == f"{path}:15: sites[0].bins[/]: unknown [red]stream[/red]\n"
