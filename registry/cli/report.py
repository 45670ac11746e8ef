"""`registry report ...`: reports for clinicians and for release outside the registry."""

from __future__ import annotations

import click

from registry.cli.base import Context, check_output, cli, handle_errors, pass_ctx, write_output


@cli.group()
def report() -> None:
    """Reports for clinicians and for release outside the registry."""


@report.command("study")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["html", "json", "csv"]), default="json")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), help="Output file (default: stdout).")
@click.option("--min-cell", type=click.IntRange(min=1), help="Suppress counts below N.")
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Data cutoff to use.")
@click.option("--endpoint", "endpoints", multiple=True, help="Endpoint(s) to compare.")
@click.option(
    "--landmark-days",
    type=click.IntRange(min=0),
    help="Landmark analysis from the index transplant (for transplant-origin endpoints).",
)
@pass_ctx
@handle_errors
def report_study(
    ctx: Context,
    name: str,
    fmt: str,
    out: str | None,
    min_cell: int | None,
    as_of,
    endpoints: tuple[str, ...],
    landmark_days: int | None,
) -> None:
    """Study report NAME as JSON (stdout by default), HTML or the per-patient CSV.

    Example: registry report study lenalidomide-relapse --format html --out report.html
    """
    from registry.cohorts.definition import load_definition
    from registry.cohorts.sql import read_cohort
    from registry.reports.release import release
    from registry.reports.study import build_study_report

    if out:
        check_output(out)
    defn = load_definition(name)
    as_of_date = as_of.date() if as_of else None
    report = build_study_report(
        read_cohort(ctx.ready_engine(), defn, as_of_date),
        defn,
        as_of=as_of_date,
        endpoints=list(endpoints) or None,
        landmark_days=landmark_days,
    )
    body = release(report, fmt, min_cell)
    if out:
        write_output(out, body)
        ctx.note(f"wrote {out}")
    else:
        click.echo(body)
