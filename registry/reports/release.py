"""What may leave the registry: every rendering of a study report goes through ``release``,
which applies the small-cell rule (``--min-cell N``) for every caller — the CLI, the demo, a
script — and refuses the per-patient table when counts must be suppressed."""

from __future__ import annotations

from pathlib import Path

from registry.core.errors import UsageError
from registry.reports.render import figures, to_csv, to_html, to_json, to_summary_csv, write_figure_files
from registry.reports.study import StudyReport
from registry.reports.suppress import released

FORMATS = ("json", "html", "csv")
TABLES = ("patients", "summary")


def check_release(fmt: str, min_cell: int | None = None, table: str = "patients") -> None:
    """``UsageError`` (64) for an output that cannot be released as asked (checked before any work)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    if table not in TABLES:
        raise UsageError(f"unknown table {table!r} (known: {', '.join(TABLES)})")
    if fmt == "csv" and table == "patients" and min_cell:
        raise UsageError(
            "the per-patient table cannot leave the registry with --min-cell",
            hint="use --format json or html, or --format csv --table summary, for released reports",
        )


def release(report: StudyReport, fmt: str, min_cell: int | None = None, table: str = "patients") -> str:
    """Render ``report`` as ``fmt`` (json, html or csv: the per-patient table, or with
    ``table="summary"`` the tidy summary tables).

    Parameters
    ----------
    report
        A computed study report.
    fmt
        ``json``, ``html`` or ``csv``.
    table
        For csv: ``patients`` (internal only) or ``summary``.
    min_cell
        Counts below this are suppressed (with complementary suppression); None: no rule.

    Raises
    ------
    UsageError
        For the per-patient table under suppression, or an unknown format.
    """
    check_release(fmt, min_cell, table)
    if fmt == "csv" and table == "summary":
        return to_summary_csv(released(report.data, min_cell))
    if fmt == "csv":
        return to_csv(report.patients)
    data = released(report.data, min_cell)
    return to_json(data) if fmt == "json" else to_html(data)


def write_figures(report: StudyReport, folder: Path, min_cell: int | None = None) -> list[Path]:
    """Write every figure of the released report into ``folder``: SVG and 300-dpi PNG."""
    data = released(report.data, min_cell)
    return write_figure_files(folder, lambda fmt: figures(data, fmt))
