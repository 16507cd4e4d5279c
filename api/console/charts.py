"""The monthly report's charts as geometry, drawn twice from the same numbers: as inline SVG in
the printable page (templates/_bars.svg) and with the PDF's own primitives (report_pdf.py).
No chart library: a bar per day on a 0–100 scale is a few rectangles, and the PDF needs no
browser to draw them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final

WIDTH: Final = 640.0
HEIGHT: Final = 180.0
LEFT: Final = 32.0  # room for the axis values
BOTTOM: Final = 20.0  # room for the day numbers
TOP: Final = 8.0
TICKS: Final = (0, 50, 100)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: float
    label: str  # the day of the month, under the bar


@dataclass(frozen=True, slots=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True, slots=True)
class BarChart:
    """A vertical bar per day, in a WIDTH × HEIGHT box (y down, as SVG and the PDF draw)."""

    width: float
    height: float
    left: float
    bottom_y: float
    bars: tuple[Bar, ...]
    ticks: tuple[Tick, ...]
    empty_days: tuple[str, ...]  # days without a value: no bar, said under the chart


def daily_bars(values: Sequence[tuple[date, float | None]]) -> BarChart:
    """One slot per day of `values` (in order), a bar for each value (0–100, clamped)."""
    plot_height = HEIGHT - BOTTOM - TOP
    bottom_y = HEIGHT - BOTTOM
    slot = (WIDTH - LEFT) / max(1, len(values))
    bars = []
    for index, (day, value) in enumerate(values):
        if value is None:
            continue
        height = plot_height * min(100.0, max(0.0, value)) / 100
        bars.append(
            Bar(
                x=LEFT + index * slot + slot * 0.15,
                y=bottom_y - height,
                width=slot * 0.7,
                height=height,
                value=value,
                label=str(day.day),
            )
        )
    ticks = tuple(Tick(y=bottom_y - plot_height * value / 100, value=value) for value in TICKS)
    empty = tuple(str(day.day) for day, value in values if value is None)
    return BarChart(WIDTH, HEIGHT, LEFT, bottom_y, tuple(bars), ticks, empty)
