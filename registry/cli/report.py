"""`registry report ...`: reports for clinicians and for release outside the registry."""

from __future__ import annotations

import click

from registry.cli.base import Context, check_output, cli, handle_errors, pass_ctx, write_output
from registry.core.errors import UsageError


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
    from registry.reports.render import to_csv, to_html, to_json
    from registry.reports.study import build_study_report
    from registry.reports.suppress import suppress

    if fmt == "csv" and min_cell:
        raise UsageError(
            "the per-patient table cannot leave the registry with --min-cell",
            hint="use --format json or html for released reports",
        )
    if out:
        check_output(out)
    defn = load_definition(name)
    rep = build_study_report(
        ctx.ready_engine(),
        defn,
        as_of=as_of.date() if as_of else None,
        endpoints=list(endpoints) or None,
        landmark_days=landmark_days,
    )
    data = suppress(rep.data, min_cell) if min_cell else rep.data
    if fmt == "json":
        body = to_json(data)
    elif fmt == "html":
        body = to_html(rep, data)
    else:
        body = to_csv(rep)
    if out:
        write_output(out, body)
        ctx.note(f"wrote {out}")
    else:
        click.echo(body)
