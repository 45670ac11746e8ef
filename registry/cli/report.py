"""`registry report ...`: reports for clinicians and for release outside the registry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from registry.cli.base import Context, check_output, cli, handle_errors, pass_ctx, write_output
from registry.core.errors import UsageError
from registry.core.files import share_reports

F = TypeVar("F", bound=Callable[..., Any])


@cli.group()
def report() -> None:
    """Reports for clinicians and for release outside the registry."""


def _check_group(ctx: Context) -> None:
    """A configured report group must exist (78) before any work is done."""
    from registry.core.files import group_id

    if ctx.settings.report_group:
        group_id(ctx.settings.report_group)


def _output_options(fn: F) -> F:
    """The options every report shares: format, output file, release threshold, data cutoff and
    a folder for the figures."""
    for option in reversed(
        (
            click.option(
                "--format",
                "fmt",
                type=click.Choice(["html", "json", "csv"]),
                help="html, json or csv (default: from --out's extension, else json).",
            ),
            click.option(
                "--out", type=click.Path(dir_okay=False, path_type=str), help="Output file (default: stdout)."
            ),
            click.option("--min-cell", type=click.IntRange(min=1), help="Suppress counts below N."),
            click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Data cutoff to use."),
            click.option(
                "--figures",
                "figures_dir",
                type=click.Path(file_okay=False, path_type=str),
                help="Also write every figure into this folder as SVG and 300-dpi PNG.",
            ),
        )
    ):
        fn = option(fn)
    return fn


FORMATS = {".html": "html", ".htm": "html", ".json": "json", ".csv": "csv"}


def output_format(fmt: str | None, out: str | None) -> str:
    """The format asked for, else the one ``--out``'s extension names, else JSON; an extension
    that contradicts ``--format`` is a usage error (64), never JSON in an .html file."""
    implied = FORMATS.get(Path(out).suffix.lower()) if out else None
    if fmt and implied and fmt != implied:
        raise UsageError(
            f"--format {fmt} contradicts --out {out} (a .{implied} file)",
            hint=f"use --format {implied}, or an --out ending in .{fmt}",
        )
    return fmt or implied or "json"


def _emit(ctx: Context, out: str | None, body: str, *, share: bool = True) -> None:
    """The report on stdout, or in ``out`` (shared with the report group when ``share``)."""
    if not out:
        click.echo(body)
        return
    write_output(out, body)
    if share:
        share_reports([Path(out)], ctx.settings.report_group)
    ctx.note(f"wrote {out}")


@report.command("study")
@click.argument("name")
@_output_options
@click.option("--endpoint", "endpoints", multiple=True, help="Endpoint(s) to compare.")
@click.option(
    "--landmark-days",
    type=click.IntRange(min=0),
    help="Landmark analysis from the index transplant (for transplant-origin endpoints).",
)
@click.option(
    "--table",
    type=click.Choice(["patients", "summary"]),
    default="patients",
    show_default=True,
    help="With --format csv: the per-patient table (internal only) or the tidy summary tables.",
)
@click.option("--horizon-months", type=click.IntRange(min=1), help="End of the plots' time axis.")
@pass_ctx
@handle_errors
def report_study(
    ctx: Context,
    name: str,
    fmt: str | None,
    out: str | None,
    min_cell: int | None,
    as_of,
    endpoints: tuple[str, ...],
    landmark_days: int | None,
    table: str,
    figures_dir: str | None,
    horizon_months: int | None,
) -> None:
    """Study report NAME as JSON (stdout by default), HTML or the per-patient CSV.

    Without --min-cell the report is internal (marked so on every page); with it, every count
    below N is suppressed in every output. A registry with patients awaiting derivation, an
    --as-of outside the data, or an empty cohort is refused (exit 65).

    Example: registry report study lenalidomide-relapse --format html --min-cell 11 --out report.html
    """
    from registry.reports.inputs import study_report
    from registry.reports.release import check_release, release, write_figures

    fmt = output_format(fmt, out)
    check_release(fmt, min_cell, table)
    _check_group(ctx)
    if out:
        check_output(out)
    report = study_report(
        ctx.ready_engine(),
        name,
        as_of=as_of.date() if as_of else None,
        endpoints=list(endpoints) or None,
        landmark_days=landmark_days,
        horizon_months=horizon_months,
    )

    body = release(report, fmt, min_cell, table)
    if figures_dir:
        written = write_figures(report, Path(figures_dir), min_cell)
        share_reports([Path(figures_dir), *written], ctx.settings.report_group)
        ctx.note(f"wrote {len(written)} figures into {figures_dir}")
    _emit(ctx, out, body, share=not (fmt == "csv" and table == "patients"))  # per-patient: private


@report.command("outcomes")
@_output_options
@click.option(
    "--by",
    default="iss_stage,riss_stage,cytogenetic_risk,age_group,era,maintenance",
    show_default=True,
    help="Comma-separated factors to stratify by.",
)
@click.option(
    "--maintenance-landmark-days",
    type=click.IntRange(min=0),
    default=180,
    show_default=True,
    help="Landmark of the maintenance comparison (days after the index transplant).",
)
@pass_ctx
@handle_errors
def report_outcomes(
    ctx: Context,
    fmt: str | None,
    out: str | None,
    min_cell: int | None,
    as_of,
    by: str,
    maintenance_landmark_days: int,
    figures_dir: str | None,
) -> None:
    """Outcomes after the index autologous transplant: OS, PFS, and the cumulative incidence of
    relapse and of non-relapse mortality (competing risks), overall and by risk factor.

    JSON (stdout by default), HTML or the tidy summary CSV; --min-cell as for the study report.
    The per-patient table: registry cohort export transplant-outcomes.

    Example: registry report outcomes --format html --min-cell 11 --out outcomes.html
    """
    from registry.reports.inputs import outcomes_report
    from registry.reports.outcomes import release_outcomes
    from registry.reports.outcomes_render import outcome_figures, render_outcomes
    from registry.reports.render import write_figure_files

    fmt = output_format(fmt, out)
    _check_group(ctx)
    if out:
        check_output(out)
    factors = [b.strip() for b in by.split(",") if b.strip()]
    report = outcomes_report(
        ctx.ready_engine(),
        by=factors,
        as_of=as_of.date() if as_of else None,
        landmark_days=maintenance_landmark_days,
    )
    data = release_outcomes(report.data, min_cell)
    body = render_outcomes(data, fmt)
    if figures_dir:
        folder = Path(figures_dir)
        written = write_figure_files(folder, lambda fmt: outcome_figures(data, fmt))
        share_reports([folder, *written], ctx.settings.report_group)
        ctx.note(f"wrote figures into {figures_dir}")
    _emit(ctx, out, body)
