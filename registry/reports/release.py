"""What may leave the registry: every rendering of a study report goes through ``release``,
which applies the small-cell rule (``--min-cell N``) for every caller — the CLI, the demo, a
script — and refuses the per-patient table when counts must be suppressed."""

from __future__ import annotations

from registry.core.errors import UsageError
from registry.reports.render import to_csv, to_html, to_json
from registry.reports.study import StudyReport
from registry.reports.suppress import suppress

FORMATS = ("json", "html", "csv")


def release(report: StudyReport, fmt: str, min_cell: int | None = None) -> str:
    """Render ``report`` as ``fmt`` (json, html or csv: the per-patient table).

    Parameters
    ----------
    report
        A computed study report.
    fmt
        ``json``, ``html`` or ``csv``.
    min_cell
        Counts below this are suppressed (with complementary suppression); None: no rule.

    Raises
    ------
    UsageError
        For the per-patient table under suppression, or an unknown format.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown report format {fmt!r} (known: {', '.join(FORMATS)})")
    if fmt == "csv":
        if min_cell:
            raise UsageError(
                "the per-patient table cannot leave the registry with --min-cell",
                hint="use --format json or html for released reports",
            )
        return to_csv(report)
    data = suppress(report.data, min_cell) if min_cell else report.data
    return to_json(data) if fmt == "json" else to_html(report, data)
