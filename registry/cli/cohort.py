"""`registry cohort ...`: cohort definitions, analysis tables and analysts' views."""

from __future__ import annotations

import click

from registry.cli.base import (
    Context,
    check_output,
    cli,
    echo_json,
    format_option,
    handle_errors,
    pass_ctx,
    write_output,
)


@cli.group()
def cohort() -> None:
    """Cohort definitions, per-patient analysis tables and analysts' views."""


@cohort.command("list")
@format_option("text", "json")
@handle_errors
def cohort_list(fmt: str) -> None:
    """List the built-in cohort definitions.

    Example: registry cohort list
    """
    from registry.cohorts.definition import builtin_names, load_definition

    definitions = [load_definition(name) for name in builtin_names()]
    if fmt == "json":
        echo_json([{"name": d.name, "version": d.version, "title": d.title} for d in definitions])
        return
    for d in definitions:
        click.echo(f"{d.name} (v{d.version}): {d.title}")


@cohort.command("export")
@click.argument("name")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=str))
@click.option("--as-of", type=click.DateTime(["%Y-%m-%d"]), help="Data cutoff to use.")
@pass_ctx
@handle_errors
def cohort_export(ctx: Context, name: str, out: str, as_of) -> None:
    """Write the per-patient analysis table of cohort NAME as CSV.

    Example: registry cohort export lenalidomide-relapse --out patients.csv
    """
    from registry.cohorts.definition import load_definition
    from registry.cohorts.sql import read_analysed
    from registry.reports.render import to_csv
    from registry.reports.study import patient_table, table_columns

    check_output(out)
    defn = load_definition(name)
    cut = as_of.date() if as_of else None
    analysed, _ = read_analysed(ctx.ready_engine(), defn, cut, columns=table_columns(defn))
    table = patient_table(analysed, defn)
    write_output(out, to_csv(table))
    ctx.note(f"wrote {len(table)} patient(s) to {out}")


@cohort.command("views")
@pass_ctx
@handle_errors
def cohort_views(ctx: Context) -> None:
    """(Re)create one SQL view per built-in cohort for analysts (cohort_<name>).

    Example: registry cohort views && psql -c 'SELECT * FROM cohort_lenalidomide_relapse'
    """
    from registry.cohorts.sql import create_builtin_views
    from registry.db.roles import grant_views

    with ctx.ready_engine().begin() as conn:
        for name in create_builtin_views(conn):
            click.echo(f"view {name}")
        grant_views(conn)  # analysts (PostgreSQL) read the cohort views too
