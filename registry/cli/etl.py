"""`registry etl ...`: validate and load export bundles; the run ledger and the quarantine."""

from __future__ import annotations

import sys

import click

from registry.cli.base import Context, check_output, cli, echo_json, format_option, handle_errors, pass_ctx
from registry.core.enums import RunStatus
from registry.core.errors import RegistryError


@cli.group()
def etl() -> None:
    """Validate and load hospital export bundles."""


def _progress(ctx: Context):
    """Row counter on a terminal's stderr; nothing when not a TTY (cron, pipes) or --quiet."""
    if not ctx.interactive:
        return None

    def report(name: str, rows: int) -> None:
        unit = "patients" if name == "derivation" else "rows"
        click.echo(f"\r  {name:<16} {rows:>12,} {unit}", err=True, nl=False)

    return report


def _print_counts(summary) -> None:
    click.echo(
        f"{'file':<16}{'read':>10}{'loaded':>10}{'quarant.':>10}{'warn':>6}{'changed':>9}{'retired':>9}"
        f"{'unchanged':>11}"
    )
    for name, c in summary.files.items():
        same = "file" if c.unchanged_file else f"{c.unchanged_rows}"
        click.echo(
            f"{name:<16}{c.read:>10}{c.loaded:>10}{c.quarantined:>10}{c.warnings:>6}{c.changed:>9}{c.retired:>9}"
            f"{same:>11}"
        )


@etl.command("run")
@click.argument("bundle", type=click.Path(path_type=str))
@click.option("--force", is_flag=True, help="Load even if older than the site's last bundle.")
@format_option("text", "json")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=50_000, show_default=True)
@click.option("--no-derive", is_flag=True, help="Skip the derivation stage after loading.")
@click.option(
    "--max-quarantine-rate",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Refuse the bundle when a file (10+ rows) would lose a larger share of rows to the quarantine.",
)
@click.option(
    "--column-gone",
    "columns_gone",
    multiple=True,
    metavar="FILE.COLUMN",
    help="A column the site delivered before and dropped on purpose (e.g. patients.iss_stage): "
    "load the full export without it (recorded in the run). Repeatable.",
)
@click.option("--demo-key", is_flag=True, hidden=True)
@pass_ctx
@handle_errors
def etl_run(
    ctx: Context,
    bundle: str,
    force: bool,
    fmt: str,
    chunk_rows: int,
    no_derive: bool,
    max_quarantine_rate: float,
    columns_gone: tuple[str, ...],
    demo_key: bool,
) -> None:
    """Load BUNDLE (a folder or .zip) in one transaction; bad rows are quarantined.

    With --format json, stdout holds only the JSON summary; progress and warnings go to
    stderr. Exit codes: 0 loaded (quarantined rows included), 65 bundle refused,
    66 no such bundle, 69 database unreachable, 75 another run holds the lock, 78 config.

    Example: registry etl run exports/site-a-2026-06-30.zip
    """
    from etl.pipeline import run_bundle

    key = ctx.settings.require_key(demo=demo_key)
    try:
        summary = run_bundle(
            ctx.existing_engine(),
            bundle,
            key,
            force=force,
            chunk_rows=chunk_rows,
            progress=_progress(ctx),
            derive=not no_derive,
            max_quarantine_rate=max_quarantine_rate,
            columns_gone=frozenset(c.strip().lower() for c in columns_gone),
            resources=ctx.settings.resources,
        )
    except RegistryError as exc:
        if fmt == "json":  # a scheduler reading stdout gets JSON on failure too
            echo_json(
                {"status": "failed", "exit_code": exc.exit_code, "message": exc.message, "hint": exc.hint}
            )
        raise
    if ctx.interactive:
        click.echo("", err=True)
    for w in summary.warnings:
        ctx.warn(w)
    if fmt == "json":
        echo_json(summary.to_json())
        return
    click.echo(f"run {summary.run_id}: {summary.status}: {summary.message}")
    if summary.status != RunStatus.UNCHANGED:
        _print_counts(summary)
    if summary.derived_patients is not None:
        click.echo(
            f"derived {summary.derived_patients} patient(s), "
            f"{summary.derived_written or 0} with changed results"
        )


@etl.command("validate")
@click.argument("bundle", type=click.Path(path_type=str))
@click.option(
    "--quarantine-csv",
    type=click.Path(dir_okay=False, path_type=str),
    help="Write the rows that would be quarantined (one line per reason).",
)
@format_option("text", "json")
@pass_ctx
@handle_errors
def etl_validate(ctx: Context, bundle: str, quarantine_csv: str | None, fmt: str) -> None:
    """Dry run: every check of `etl run`, nothing written to the registry.

    Example: registry etl validate exports/site-a/ --quarantine-csv problems.csv
    """
    from etl.pipeline import run_bundle
    from etl.runs import write_quarantine_csv

    key = ctx.settings.require_key(demo=True)
    target = check_output(quarantine_csv) if quarantine_csv else None
    summary = run_bundle(
        ctx.existing_engine(),
        bundle,
        key,
        dry_run=True,
        progress=_progress(ctx),
        resources=ctx.settings.resources,
    )
    if target is not None:
        write_quarantine_csv(((None, q) for q in summary.quarantine), target)
    for w in summary.warnings:
        ctx.warn(w)
    if fmt == "json":
        echo_json(summary.to_json())
        return
    click.echo(summary.message)
    _print_counts(summary)


@etl.command("runs")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@format_option("text", "json")
@pass_ctx
@handle_errors
def etl_runs(ctx: Context, limit: int, fmt: str) -> None:
    """The run ledger, newest first.

    Example: registry etl runs --limit 5
    """
    from etl.runs import list_runs

    runs = list_runs(ctx.ready_engine(), limit)
    if fmt == "json":
        echo_json(runs)
        return
    click.echo(
        f"{'run':>5} {'status':<10} {'site':<12} {'cutoff':<11} {'read':>9} "
        f"{'loaded':>9} {'quar.':>6}  message"
    )
    for r in runs:
        click.echo(
            f"{r['run_id']:>5} {r['status']:<10} {r['site'] or '-':<12} "
            f"{r['data_cutoff'] or '-':<11} {r['read']:>9} {r['loaded']:>9} "
            f"{r['quarantined']:>6}  {r['message'] or ''}"
        )
        if r["unmapped_drugs"]:
            names = ", ".join(f"{name!r} ({n})" for name, n in list(r["unmapped_drugs"].items())[:10])
            more = len(r["unmapped_drugs"]) - 10
            click.echo(f"{'':>6}unmapped drug names: {names}" + (f" and {more} more" if more > 0 else ""))


@etl.command("quarantine")
@click.option("--run", "run_id", type=int, help="Run id (default: the latest with quarantine).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), help="CSV file (default: stdout).")
@click.option(
    "--causes",
    is_flag=True,
    help="Instead of the rows: the root causes (rule, column, rows), orphans last.",
)
@pass_ctx
@handle_errors
def etl_quarantine(ctx: Context, run_id: int | None, out: str | None, causes: bool) -> None:
    """Quarantined rows with every reason, as CSV (one line per reason), or their causes.

    Orphans (rows whose patient was itself quarantined) follow from another cause: --causes
    ranks every other cause first.

    Example: registry etl quarantine --run 12 --out run12-problems.csv
    """
    from etl.loading import root_causes
    from etl.runs import iter_quarantine, write_quarantine_csv

    target = check_output(out) if out else None
    rows = iter_quarantine(ctx.ready_engine(), run_id)
    if causes:
        ranked = root_causes([row for _, row in rows])
        body = "rule,column,rows\n" + "".join(f"{r},{c or ''},{n}\n" for r, c, n in ranked)
        if target is not None:
            target.write_text(body, encoding="utf-8")
        else:
            click.echo(body, nl=False)
        return
    if target is not None:
        n = write_quarantine_csv(rows, target)
        ctx.note(f"wrote {n} reason line(s) to {out}")
    else:
        write_quarantine_csv(rows, sys.stdout)
