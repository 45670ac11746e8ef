"""`registry dq ...`: data-quality checks over the loaded registry."""

from __future__ import annotations

import sys
from typing import Any

import click

from registry.cli.base import Context, cli, echo_json, format_option, handle_errors, pass_ctx
from registry.core.errors import EXIT_DATA


@cli.group()
def dq() -> None:
    """Data-quality checks: run them, show a run, compare two runs."""


def _table(results: list[Any]) -> None:
    click.echo(
        f"{'check':<34}{'category':<14}{'severity':<9}{'status':<16}{'violated':>10}{'of':>10}{'%':>9}{'limit':>7}"
    )
    for r in results:
        pct = "-" if r.pct is None else f"{r.pct:.2f}"
        violated = "-" if r.violated is None else r.violated
        of = "-" if r.denominator is None else r.denominator
        click.echo(
            f"{r.check_id:<34}{r.category:<14}{r.severity:<9}{r.status:<16}{violated:>10}{of:>10}"
            f"{pct:>9}{r.threshold:>7g}"
        )


@dq.command("run")
@format_option("text", "json")
@click.option(
    "--fail-on",
    type=click.Choice(["failed", "never"]),
    default="never",
    show_default=True,
    help="Exit 65 when a check fails (for schedulers that should stop on it).",
)
@pass_ctx
@handle_errors
def dq_run(ctx: Context, fmt: str, fail_on: str) -> None:
    """Run every check over the current registry and store the run.

    Example: registry dq run --format json
    """
    from registry.quality.run import FAILED, run_checks

    run_id, results = run_checks(ctx.ready_engine(), ctx.settings.dq_thresholds)
    if fmt == "json":
        echo_json({"run_id": run_id, "checks": [r.to_json() for r in results]})
    else:
        click.echo(
            f"data-quality run {run_id}: {sum(r.status == FAILED for r in results)} of {len(results)} failed"
        )
        _table(results)
    if fail_on == "failed" and any(r.status == FAILED for r in results):
        sys.exit(EXIT_DATA)


@dq.command("show")
@click.option("--run", "run_id", type=int, help="Run id (default: the latest).")
@click.option("--status", type=click.Choice(["passed", "failed", "not_applicable", "error"]))
@click.option("--check", "check_id", help="With --rows: the check whose violating records to list.")
@click.option("--rows", is_flag=True, help="List the check's violating records (pseudonymous keys, lineage).")
@format_option("text", "json")
@pass_ctx
@handle_errors
def dq_show(
    ctx: Context, run_id: int | None, status: str | None, check_id: str | None, rows: bool, fmt: str
) -> None:
    """A stored run, with today's thresholds re-applied to its counts; or a check's rows.

    Example: registry dq show --status failed
    """
    from registry.core.errors import UsageError
    from registry.quality.run import stored_results, violating_rows

    engine = ctx.ready_engine()
    if rows:
        if not check_id:
            raise UsageError("--rows needs --check ID")
        found = violating_rows(engine, check_id)
        if fmt == "json":
            echo_json(found)
        else:
            click.echo("record_key,patient_key,site,run_id,source_row")
            for r in found:
                click.echo(
                    f"{r['record_key']},{r['patient_key']},{r['site'] or ''},{r['run_id']},{r['source_row']}"
                )
        return
    run, results = stored_results(engine, run_id, ctx.settings.dq_thresholds)
    shown = [r for r in results if status is None or r.status == status]
    if check_id:
        shown = [r for r in shown if r.check_id == check_id]
    if fmt == "json":
        echo_json({"run_id": run, "checks": [r.to_json() for r in shown]})
    else:
        click.echo(f"data-quality run {run}")
        _table(shown)


@dq.command("diff")
@click.argument("run_a", type=int, required=False)
@click.argument("run_b", type=int, required=False)
@format_option("text", "json")
@pass_ctx
@handle_errors
def dq_diff(ctx: Context, run_a: int | None, run_b: int | None, fmt: str) -> None:
    """New, resolved and persisting failures between two runs (default: the last two).

    Example: registry dq diff
    """
    from registry.quality.run import diff

    d = diff(ctx.ready_engine(), run_a, run_b, ctx.settings.dq_thresholds)
    if fmt == "json":
        echo_json(d)
        return
    click.echo(f"run {d['run_a']} -> run {d['run_b']}")
    for kind in ("new", "resolved", "persisting"):
        click.echo(f"{kind:<11} {', '.join(d[kind]) or '-'}")
    for c in d["changes"]:
        if c["change"]:
            click.echo(f"  {c['check_id']:<34} {c['pct_before']:.2f}% -> {c['pct_after']:.2f}%")


@dq.command("checks")
@format_option("text", "json")
@pass_ctx
@handle_errors
def dq_checks(ctx: Context, fmt: str) -> None:
    """The check catalogue with the thresholds in force.

    Example: registry dq checks
    """
    from registry.quality.checks import CATALOGUE
    from registry.quality.run import thresholds

    limits = thresholds(ctx.settings.dq_thresholds)
    rows = [
        {
            "check_id": c.check_id,
            "category": str(c.category),
            "severity": str(c.severity),
            "threshold": limits[c.check_id],
            "description": c.description,
        }
        for c in CATALOGUE
    ]
    if fmt == "json":
        echo_json(rows)
        return
    for r in rows:
        head = f"{r['check_id']:<34}{r['category']:<14}{r['severity']:<9}{r['threshold']:>6g}%"
        click.echo(f"{head}  {r['description']}")
