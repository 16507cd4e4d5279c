"""The `binwatch` command. Each command builds the Settings itself (from BINWATCH_* variables);
`binwatch --help` lists them."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any, NoReturn

import typer
from pydantic import SecretStr, ValidationError
from pydantic_core import PydanticUndefined
from sqlalchemy import exc as sa_exc

from binwatch.commands.alerter import alerter
from binwatch.commands.api import api
from binwatch.commands.channels import channels_app
from binwatch.commands.collector import collector
from binwatch.commands.db import db_app
from binwatch.commands.deadletters import deadletters_app
from binwatch.commands.fleet import fleet_app
from binwatch.commands.ingest import ingest
from binwatch.commands.rollups import rollups_app
from binwatch.commands.security import keys_app, mqtt_auth_app
from binwatch.commands.simulate import simulate
from binwatch.commands.users import users_app
from binwatch.demo import demo
from binwatch.grafana import grafana_app
from binwatch.output import error
from core.errors import BinwatchError
from core.settings import ENV_PREFIX, GROUPS, env_names, redact_url
from core.sql import is_not_migrated


def _shown(default: object) -> str:
    """A default as the environment would spell it (a secret URL's, with any password hidden)."""
    if isinstance(default, SecretStr):
        return repr(str(default))
    return "none" if default is PydanticUndefined else repr(default)


def _settings_help() -> str:
    rows = [
        f"  BINWATCH_{name.upper():<36} {field.description or ''} [{_shown(field.default)}]"
        for name, field in env_names().items()
    ]
    # "\b" keeps click from re-wrapping the table.
    return "Configuration, from environment variables [default]:\n\n\b\n" + "\n".join(rows)


def setting_errors(exc: ValidationError) -> list[str]:
    """Each wrong setting of a refused `Settings()` as the user set it: the variable's name,
    what it was (a URL with its password hidden; a secret not at all) and what it accepts."""
    lines = []
    for problem in exc.errors(include_url=False):
        loc = [str(part) for part in problem["loc"]]
        if not loc:
            name = f"{ENV_PREFIX}*"
        elif loc[0] in GROUPS:  # a group's field, or the group as a whole (two of its fields)
            name = f"{ENV_PREFIX}{loc[0].upper()}_{loc[1].upper() if len(loc) > 1 else '*'}"
        else:
            name = f"{ENV_PREFIX}{loc[0].upper()}"
        message = problem["msg"].removeprefix("Value error, ")
        value = problem.get("input")
        if isinstance(value, str) and not any(
            secret in name for secret in ("PASSWORD", "TOKEN", "SECRET", "KEY")
        ):
            lines.append(f"{name}={redact_url(value)!r}: {message}")
        else:
            lines.append(f"{name}: {message}")
    return lines


class _Cli(typer.Typer):
    """The `binwatch` command: a mistake a user can make (a wrong setting, a registry that
    does not answer, a file that cannot be written, anything binwatch refuses) ends with what
    is wrong and exit status 1, never a traceback. A command handles what it can say better
    itself; this catches what reaches the top."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            if exc.title != "Settings":
                raise
            _stop(
                "binwatch: a setting is wrong (binwatch --help lists them all):",
                *setting_errors(exc),
            )
        except BinwatchError as exc:
            _stop(str(exc))
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.ProgrammingError) as exc:
            first = str(exc.orig or exc).strip().splitlines()[0]
            if is_not_migrated(exc):
                _stop(
                    f"the registry has no tables yet ({first}): run `binwatch db migrate`, or "
                    "check that BINWATCH_DATABASE_URL names the registry"
                )
            if isinstance(exc, sa_exc.ProgrammingError):
                raise
            _stop(f"the registry database does not answer ({first}); check BINWATCH_DATABASE_URL")
        except OSError as exc:
            if exc.filename is None:
                raise
            _stop(f"{exc.filename}: {exc.strerror or exc}")


def _stop(*lines: str) -> NoReturn:
    for line in lines:
        error(line)
    sys.exit(1)


app = _Cli(
    help="binwatch: smart-bin monitoring for a city's garbage-sorting pilot.\n\n"
    + _settings_help(),
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log debug messages")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request at INFO: thousands a minute from ingest.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Alembic says which dialect it uses at INFO before every command's own output.
    logging.getLogger("alembic").setLevel(logging.INFO if verbose else logging.WARNING)


app.add_typer(fleet_app, name="fleet")
app.add_typer(db_app, name="db")
app.add_typer(deadletters_app, name="deadletters")
app.add_typer(rollups_app, name="rollups")
app.add_typer(grafana_app, name="grafana")
app.add_typer(keys_app, name="keys")
app.add_typer(mqtt_auth_app, name="mqtt-auth")
app.add_typer(users_app, name="users")
app.add_typer(channels_app, name="channels")
app.command()(ingest)
app.command()(api)
app.command()(simulate)
app.command()(collector)
app.command()(alerter)
app.command()(demo)
