"""`binwatch rollups backfill`: roll up readings written before the continuous queries existed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import Progress

from compliance.rollups import Tier, backfill
from core.coverage import open_coverage
from core.influx import InfluxClient
from core.settings import Settings
from core.telemetry import ensure_rollups

rollups_app = typer.Typer(
    help="Hourly and daily rollups of the readings, kept by InfluxDB.", no_args_is_help=True
)


def _utc(value: str, option: str) -> datetime:
    """An ISO 8601 time; one without an offset is read as UTC (the help says so)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time", param_hint=option) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@rollups_app.command("backfill")
def backfill_command(
    start: Annotated[
        str, typer.Option(help="first hour to roll up, ISO 8601 (UTC unless it has an offset)")
    ],
    end: Annotated[
        str, typer.Option(help="end of the range, exclusive (UTC unless it has an offset)")
    ],
) -> None:
    """Roll up readings written before the continuous queries existed (or re-roll a range)."""
    first, last = _utc(start, "--start"), _utc(end, "--end")
    if first >= last:
        raise typer.BadParameter("must be before --end", param_hint="--start")
    settings = Settings()
    influx = InfluxClient(settings)
    try:
        ensure_rollups(influx, settings.timezone)
        open_coverage(influx)
        with Progress() as progress:
            tasks = {
                tier: progress.add_task(f"{tier} tier", total=(last - first).total_seconds())
                for tier in ("hourly", "site_hour", "daily")
            }

            def advance(tier: Tier, chunk_end: datetime, _written: int) -> None:
                done = min(last, max(first, chunk_end)) - first
                progress.update(tasks[tier], completed=done.total_seconds())

            written = backfill(influx, first, last, timezone=settings.timezone, on_chunk=advance)
    finally:
        influx.close()
    typer.echo(
        f"{written.hourly} bin-hour, {written.site_hour} site-hour and {written.daily} site-day "
        f"points written for "
        f"{first.isoformat()} .. {last.isoformat()}"
    )
