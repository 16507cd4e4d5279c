"""The monthly report as one table for spreadsheets: a CSV that Excel on a Chinese Windows opens
right (UTF-8 with a byte-order mark, without which it reads the file as GBK and garbles every
Chinese name; CRLF lines; figures rounded) and an .xlsx with the same rows (openpyxl).

An area's table: its total, then its sites, each site type's ranking in turn (ranked sites,
then those without enough evidence). A site's: its total, then each day of the month. Every
row names its site type (the area's total: all types)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Final

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from api.console import labels
from api.console.i18n import N_, Formats
from api.console.report_model import FIGURES, MonthlyReport, not_ranked_reason
from compliance.figures import csv_cell
from compliance.schemas import Metrics, Score

Cell = str | int | float | None
Gettext = Callable[[str], str]
BOM: Final = "\ufeff"
LEAD: Final = (
    N_("Row"),
    N_("Period"),
    N_("Rank"),
    N_("Id"),
    N_("Name"),
    N_("Site type"),
)


def table(
    found: MonthlyReport, gettext: Gettext, fmt: Formats
) -> tuple[list[str], list[list[Cell]]]:
    """The header and the rows, in the reader's language; numbers rounded, None where a figure
    has no value (an empty cell, never 0)."""
    header = [gettext(name) for name in LEAD]
    header += [gettext(f.label) + (" (%)" if f.kind == "fraction" else "") for f in FIGURES]
    header.append(gettext(N_("Not ranked because")))
    report, month = found.report, found.month.strftime("%Y-%m")
    subject = report.subject

    if found.is_site:
        assert found.site_type is not None
        kind = gettext(labels.SITE_TYPES[found.site_type.value])
        rank = found.place.rank if found.place else None
        rows: list[list[Cell]] = [
            [gettext(N_("Total")), month, rank, subject.id, subject.name, kind,
             *figures(report.metrics, report.score), ""]
        ]  # fmt: skip
        for day in found.days:
            rows.append(
                [gettext(N_("Day")), day.day.isoformat(), None, subject.id, subject.name, kind,
                 *figures(day.metrics, day.score), ""]
            )  # fmt: skip
        return header, rows
    rows = [
        [gettext(N_("Total")), month, None, subject.id, subject.name,
         gettext(N_("All types")), *figures(report.metrics, report.score), ""]
    ]  # fmt: skip
    for site_type, sites in found.by_type:
        kind = gettext(labels.SITE_TYPES[site_type.value])
        for site in sites:
            rows.append(
                [gettext(N_("Site")), month, site.rank, site.id, site.name, kind,
                 *figures(site.metrics, site.score), not_ranked_reason(site, gettext, fmt)]
            )  # fmt: skip
    return header, rows


def figures(metrics: Metrics | None, score: Score | None) -> list[Cell]:
    """The FIGURES of a row, rounded; empty cells for a day without data."""
    if metrics is None or score is None:
        return [None] * len(FIGURES)
    return [f.rounded(metrics, score) for f in FIGURES]


def report_csv(found: MonthlyReport, gettext: Gettext, fmt: Formats) -> bytes:
    header, rows = table(found, gettext, fmt)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return (BOM + out.getvalue()).encode("utf-8")


def report_xlsx(found: MonthlyReport, gettext: Gettext, fmt: Formats) -> bytes:
    header, rows = table(found, gettext, fmt)
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = found.month.strftime("%Y-%m")
    sheet.append(header)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in rows:
        sheet.append(row)
        for cell in sheet[sheet.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # openpyxl writes a text that starts with "=" as a formula
    sheet.freeze_panes = "A2"
    for column, width in zip(_columns(sheet.max_column), _widths(header, rows), strict=True):
        sheet.column_dimensions[column].width = width
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _columns(count: int) -> Iterator[str]:
    return (get_column_letter(index) for index in range(1, count + 1))


def _widths(header: list[str], rows: list[list[Cell]]) -> Iterator[float]:
    """Wide enough for the longest cell (a CJK character takes two widths)."""
    for index, title in enumerate(header):
        cells = [title, *("" if row[index] is None else str(row[index]) for row in rows)]
        yield min(40.0, 2 + max(sum(2 if ord(ch) > 0x2E7F else 1 for ch in c) for c in cells))
