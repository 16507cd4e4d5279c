"""`binwatch simulate`: publish the registry's fleet as virtual bins, for demos, tests and load."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from binwatch.errors import BinwatchError
from binwatch.settings import Settings
from devices.registry import BinTags, bin_tags, make_engine
from devices.registry_errors import is_transient
from simulator.crews import Crews
from simulator.faults import Fault, Injector
from simulator.publisher import run_simulation

NO_BINS = "no bins in the registry: run `binwatch fleet import` first"


def simulate(
    interval: Annotated[
        float, typer.Option(min=0.001, help="each bin's reporting interval, in simulated seconds")
    ] = 60.0,
    speed: Annotated[
        float,
        typer.Option(
            min=0, help="simulated seconds per real second; 0: as fast as the broker allows"
        ),
    ] = 60.0,
    seed: Annotated[int, typer.Option(help="same seed, same fleet, same readings")] = 1,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="stop after this many readings per bin")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.001, help="stop after this many real seconds")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(min=1, help="flood mode: readings per second, steady, ignoring --speed"),
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
    inject: Annotated[
        list[str] | None,
        typer.Option(
            help="a fault for the demo, KIND:BIN_ID@MINUTES (simulated minutes after start), "
            "KIND one of fire, tilt, silence, battery; repeatable"
        ),
    ] = None,
) -> None:
    """Publish every registered bin's readings over MQTT until done or Ctrl-C."""
    settings = Settings()
    console = Console(stderr=True)
    try:
        injector = Injector([Fault.parse(spec) for spec in inject or []]) if inject else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--inject") from None
    bins = _registered_bins(settings, console)
    stop = threading.Event()
    _stop_on_signals(stop)
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
    """Every bin of the registry, or exit 1 saying how to get some."""
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            bins = list(bin_tags(session).values())
    except DBAPIError as exc:
        # A registry never migrated has no tables (or, for SQLite, not even its folder); on
        # PostgreSQL that is a ProgrammingError, on SQLite an OperationalError: both transient.
        if not is_transient(exc):
            raise
        console.print(f"{NO_BINS} ({exc.orig})", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if not bins:
        console.print(NO_BINS, style="red", markup=False, highlight=False)
        raise typer.Exit(1)
    return bins


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM end the run cleanly (every bin published offline); a second one stops
    waiting for a broker that no longer answers."""

    def handle(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)
