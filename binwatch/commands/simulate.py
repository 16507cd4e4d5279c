"""`binwatch simulate`: publish the registry's fleet as virtual bins, for demos, tests and load."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from binwatch.output import console as make_console
from core.errors import BinwatchError
from core.influx import InfluxClient
from core.settings import Settings
from core.signals import stop_on_signals
from core.sql import database_engine, is_transient_failure
from devices.registry import BinTags, bin_tags
from simulator.crews import Crews
from simulator.faults import Fault, Injector
from simulator.model import FIRST_FILL_MAX_PCT, Resumed
from simulator.publisher import UNBOUNDED_BACKFILL, run_simulation
from simulator.resume import stored_ends

NO_BINS = "no bins in the registry: run `binwatch fleet import` first"

# Upper bounds, so that `inf` (which click takes for a float) is a usage error, not a traceback
# from a date or a sleep it cannot make; `binwatch demo` takes the same.
INTERVAL_MAX_S = 86_400.0  # a bin reporting once a day
SPEED_MAX = 1_000_000.0  # simulated seconds per real second
DURATION_MAX_S = 366 * 86_400.0
RATE_MAX = 1_000_000.0  # readings per second


def simulate(
    interval: Annotated[
        float,
        typer.Option(
            min=0.001,
            max=INTERVAL_MAX_S,
            help="each bin's reporting interval, in simulated seconds",
        ),
    ] = 60.0,
    speed: Annotated[
        float,
        typer.Option(
            min=0,
            max=SPEED_MAX,
            help="simulated seconds per real second; 0: as fast as the broker allows",
        ),
    ] = 60.0,
    seed: Annotated[int, typer.Option(help="same seed, same fleet, same readings")] = 1,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="stop after this many readings per bin")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(min=0.001, max=DURATION_MAX_S, help="stop after this many real seconds"),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            min=1, max=RATE_MAX, help="flood mode: readings per second, steady, ignoring --speed"
        ),
    ] = None,
    crews: Annotated[
        bool, typer.Option(help="also play the operators' crews (needs the API and collector)")
    ] = False,
    late_share: Annotated[
        float, typer.Option(min=0, max=1, help="share of crew jobs that come too late")
    ] = 0.1,
    skip_share: Annotated[
        float, typer.Option(min=0, max=1, help="share of crew jobs reported done but not done")
    ] = 0.05,
    resume: Annotated[
        bool,
        typer.Option(
            help="continue each bin from its last reading stored in InfluxDB (the demo's "
            "restarts): no period is written twice"
        ),
    ] = False,
    listen_for_faults: Annotated[
        bool,
        typer.Option(help="take faults from `binwatch demo --inject` while running"),
    ] = False,
    inject: Annotated[
        list[str] | None,
        typer.Option(
            help="a fault for the demo, KIND:BIN_ID@MINUTES (simulated minutes after start), "
            "KIND one of fire, tilt, silence, battery; repeatable"
        ),
    ] = None,
    first_fill_max: Annotated[
        float,
        typer.Option(
            min=0,
            max=100,
            help="each bin starts at a fill from 0 to this (%), unless it resumes from stored "
            "data (the default is under every default threshold; the demo's is 100)",
        ),
    ] = FIRST_FILL_MAX_PCT,
) -> None:
    """Publish every registered bin's readings over MQTT until done or Ctrl-C."""
    settings = Settings()
    console = make_console(stderr=True)
    try:
        injector = Injector([Fault.parse(spec) for spec in inject or []]) if inject else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--inject") from None
    bins = _registered_bins(settings, console)
    ends = _stored_ends(settings, console) if resume else None
    stop = threading.Event()
    stop_on_signals(stop, second_interrupts=True)
    began = time.monotonic()
    crew = None
    if crews:
        crew = Crews(settings, speed=speed, seed=seed, late_share=late_share, skip_share=skip_share)
        crew.start()
    with console.status(f"simulating {len(bins)} bins…") as status:

        def show(published: int) -> None:
            per_s = published / max(time.monotonic() - began, 1e-9)
            status.update(f"{len(bins)} bins · {published:,} readings published · {per_s:,.0f}/s")

        try:
            result = run_simulation(
                settings,
                bins,
                interval_s=interval,
                speed=speed,
                seed=seed,
                rounds=rounds,
                duration_s=duration,
                rate=rate,
                stop=stop,
                on_progress=show,
                between_rounds=crew.apply if crew else None,
                injector=injector,
                resume=ends,
                listen_for_faults=listen_for_faults,
                first_fill_max=first_fill_max,
            )
        except BinwatchError as exc:
            console.print(str(exc), style="red", markup=False, highlight=False)
            raise typer.Exit(1) from None
        finally:
            if crew is not None:
                crew.stop()
    console.print(
        f"published {result.published:,} readings of {len(bins)} bins in {result.elapsed_s:.1f} s"
        f" ({result.published / max(result.elapsed_s, 1e-9):,.0f}/s); every bin now offline",
        markup=False,
        highlight=False,
    )


def _registered_bins(settings: Settings, console: Console) -> list[BinTags]:
    """Every bin of the registry in service (a retired one is switched off), or exit 1 saying
    how to get some."""
    engine = database_engine(settings)
    try:
        with Session(engine) as session:
            bins = list(bin_tags(session, in_service_only=True).values())
    except DBAPIError as exc:
        # A registry never migrated has no tables (or, for SQLite, not even its folder); on
        # PostgreSQL that is a ProgrammingError, on SQLite an OperationalError: both transient.
        if not is_transient_failure(exc):
            raise
        console.print(f"{NO_BINS} ({exc.orig})", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if not bins:
        console.print(NO_BINS, style="red", markup=False, highlight=False)
        raise typer.Exit(1)
    return bins


def _stored_ends(settings: Settings, console: Console) -> dict[str, Resumed]:
    """Each bin's last stored reading within the longest replay; exit 1 without InfluxDB."""
    influx = InfluxClient(settings)
    try:
        ends = stored_ends(influx, since=datetime.now(UTC) - UNBOUNDED_BACKFILL)
    except BinwatchError as exc:
        console.print(f"cannot resume: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    finally:
        influx.close()
    if ends:
        console.print(f"resuming {len(ends)} bins after their last stored reading")
    return ends
