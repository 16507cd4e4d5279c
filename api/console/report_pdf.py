"""The monthly report as a PDF an official can hand on (fpdf2): the same sections as the
printable page, charts drawn with the PDF's own lines and rectangles, Chinese set in
WenQuanYi Micro Hei (Debian's fonts-wqy-microhei, which the Makefile and the Dockerfile
install), embedded as a subset so the file opens on any machine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from fastapi import status
from fpdf import FPDF

from api.console import labels
from api.console.auth import PageError
from api.console.charts import BarChart
from api.console.i18n import N_, Formats
from api.console.report_model import (
    FIGURES,
    PARTS,
    MonthlyReport,
    not_ranked_reason,
    period_text,
    place_text,
    report_title,
    rule_text,
)

FONT: Final = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
FAMILY: Final = "wqy"
PAGE_WIDTH: Final = 180.0  # A4 less 15 mm margins, in mm
CHART_SCALE: Final = PAGE_WIDTH / 640.0  # the charts' geometry is in SVG units (charts.WIDTH)
GREEN: Final = (46, 125, 50)
GREY: Final = (120, 120, 120)

Gettext = Callable[[str], str]


def report_pdf(found: MonthlyReport, gettext: Gettext, fmt: Formats) -> bytes:
    if not FONT.exists():
        raise PageError(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            N_("The server lacks the Chinese font for PDF files (fonts-wqy-microhei)."),
        )
    pdf = FPDF(format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_font(FAMILY, fname=str(FONT))
    pdf.set_title(report_title(found, gettext, fmt))
    pdf.add_page()
    report = found.report
    pdf.set_font(FAMILY, size=16)
    pdf.multi_cell(
        0, 9, report_title(found, gettext, fmt), align="L", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font(FAMILY, size=9)
    pdf.multi_cell(
        0, 5, _plain(period_text(report, gettext, fmt)), align="L", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.ln(3)
    _heading(pdf, gettext(N_("Cleanliness score")))
    pdf.set_font(FAMILY, size=22)
    pdf.cell(0, 11, fmt.number(report.score.value, 1), align="L", new_x="LMARGIN", new_y="NEXT")
    _table(
        pdf,
        [gettext(N_("Part")), gettext(N_("Value")), gettext(N_("Weight")), gettext(N_("Points"))],
        [
            [
                gettext(PARTS[part.name]),
                fmt.number(part.value, 1),
                fmt.percent(None if part.effective_weight is None else 100 * part.effective_weight),
                fmt.number(part.points, 1),
            ]
            for part in report.score.parts
        ],
        (70, 35, 35, 40),
    )
    if found.place is not None:
        pdf.ln(2)
        pdf.multi_cell(
            0, 5, place_text(found, gettext, fmt), align="L", new_x="LMARGIN", new_y="NEXT"
        )
    _heading(pdf, gettext(N_("Figures")))
    _table(
        pdf,
        [gettext(N_("Figure")), gettext(N_("Value"))],
        [[gettext(f.label), f.shown(report.metrics, report.score, fmt)] for f in FIGURES],
        (110, 70),
    )
    for title, chart in found.charts:
        if pdf.get_y() + 14 + chart.height * CHART_SCALE > pdf.h - pdf.b_margin:
            pdf.add_page()  # a chart's heading stays with it
        _heading(pdf, gettext(title))
        _chart(pdf, chart)
    if found.by_type:
        _heading(pdf, gettext(N_("Ranking")))
        pdf.set_font(FAMILY, size=8)
        pdf.multi_cell(
            0, 4.5, rule_text(found.rule, gettext, fmt), align="L", new_x="LMARGIN", new_y="NEXT"
        )
        for site_type, sites in found.by_type:
            pdf.set_font(FAMILY, size=11)
            pdf.cell(
                0, 8, gettext(labels.SITE_TYPES[site_type.value]), new_x="LMARGIN", new_y="NEXT"
            )
            _table(
                pdf,
                [
                    gettext(N_("Rank")),
                    gettext(N_("Name")),
                    gettext(N_("Cleanliness score")),
                    gettext(N_("Sorting accuracy")),
                    gettext(N_("Checked deposits")),
                ],
                [
                    [
                        fmt.number(site.rank) if site.rank is not None else "—",
                        site.name,
                        fmt.number(site.score.value, 1),
                        fmt.percent(_pct(site.metrics.accuracy), 1),
                        fmt.number(site.metrics.checked_deposits),
                    ]
                    + ([not_ranked_reason(site, gettext, fmt)] if site.rank is None else [])
                    for site in sites
                ],
                (16, 74, 30, 30, 30),
            )
    pdf.ln(4)
    pdf.set_font(FAMILY, size=8)
    pdf.set_text_color(*GREY)
    generated = gettext(N_("Generated %(time)s")) % {"time": fmt.time(datetime.now(UTC))}
    pdf.cell(0, 5, _plain(generated), align="L", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _plain(text: str) -> str:
    """English times hold a narrow no-break space (12:00\u202fAM) the font has no glyph for."""
    return text.replace("\u202f", " ")


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def _heading(pdf: FPDF, text: str) -> None:
    pdf.ln(3)
    pdf.set_font(FAMILY, size=12)
    pdf.set_text_color(0, 0, 0)
    pdf.cell(0, 8, text, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FAMILY, size=9)


def _table(
    pdf: FPDF, header: list[str], rows: Sequence[list[str]], widths: tuple[float, ...]
) -> None:
    """A plain table; a row longer than the header (an unranked site's reason) adds a line
    under it across the table."""
    pdf.set_font(FAMILY, size=9)
    pdf.set_fill_color(235, 235, 235)
    for text, width in zip(header, widths, strict=True):
        pdf.cell(width, 6, text, border=1, fill=True)
    pdf.ln()
    for row in rows:
        for text, width in zip(row, widths, strict=False):
            pdf.cell(width, 6, text, border=1)
        pdf.ln()
        if len(row) > len(widths):
            pdf.set_text_color(*GREY)
            pdf.cell(
                sum(widths), 5, row[len(widths)], border=1, align="L", new_x="LMARGIN", new_y="NEXT"
            )
            pdf.set_text_color(0, 0, 0)


def _chart(pdf: FPDF, chart: BarChart) -> None:
    """The bars of `chart`, scaled from its SVG units to the page, at the current position."""
    top = pdf.get_y()
    left = pdf.l_margin
    pdf.set_font(FAMILY, size=6)
    pdf.set_draw_color(*GREY)
    pdf.set_text_color(*GREY)
    for tick in chart.ticks:
        y = top + tick.y * CHART_SCALE
        pdf.line(left + chart.left * CHART_SCALE, y, left + chart.width * CHART_SCALE, y)
        pdf.text(left, y + 1, str(tick.value))
    pdf.set_fill_color(*GREEN)
    for bar in chart.bars:
        x = left + bar.x * CHART_SCALE
        pdf.rect(x, top + bar.y * CHART_SCALE, bar.width * CHART_SCALE,
                 bar.height * CHART_SCALE, style="F")  # fmt: skip
        pdf.text(x, top + (chart.bottom_y + 8) * CHART_SCALE, bar.label)
    pdf.set_text_color(0, 0, 0)
    pdf.set_y(top + chart.height * CHART_SCALE + 2)
