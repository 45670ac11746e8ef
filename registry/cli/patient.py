"""`registry derive`, `registry patient show` and `registry patient history`."""

from __future__ import annotations

import json

import click

from registry.cli.base import Context, cli, echo_json, format_option, handle_errors, pass_ctx


@cli.command()
@click.option("--all", "all_patients", is_flag=True, help="Re-derive every patient.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes deriving in parallel (default: REGISTRY_DERIVE_WORKERS, else the number of cores).",
)
@pass_ctx
@handle_errors
def derive(ctx: Context, all_patients: bool, workers: int | None) -> None:
    """Derive lines, regimens, maintenance and relapses (changed patients, or --all).

    Example: registry derive --all
    """
    from registry.derive.run import derivation_status, derive_pending

    engine = ctx.ready_engine()
    progress = None
    if ctx.interactive:

        def progress(done: int, total: int) -> None:
            click.echo(f"\r  derived {done:,}/{total:,} patients", err=True, nl=False)

    try:
        res = derive_pending(
            engine,
            all_patients=all_patients,
            progress=progress,
            workers=workers or ctx.settings.resources.derive_workers,
        )
    finally:
        if ctx.interactive:  # end the progress line (also before an interruption's message)
            click.echo("", err=True)
    click.echo(
        f"derived {res.patients} patient(s) under rules {res.rules_version} "
        f"({res.written} with changed results); cleared {res.retired} retired; "
        f"parameters: {json.dumps(res.parameters)}"
    )
    with engine.connect() as conn:
        message = derivation_status(conn).message
    if message:
        ctx.warn(message)


@cli.group()
def patient() -> None:
    """Look at one patient's registry record."""


@patient.command("show")
@click.argument("patient_key")
@format_option("text", "json", "html")
@pass_ctx
@handle_errors
def patient_show(ctx: Context, patient_key: str, fmt: str) -> None:
    """Timeline of one patient: diagnosis, transplants, lines, regimens, relapses, follow-up.

    PATIENT_KEY is the pseudonym (or a unique prefix of it). ``--format html`` writes a page
    that also draws the laboratory series (M-protein or free light chains over time, with the
    line starts, nadirs and relapses marked).

    Example: registry patient show 3f29a1c0 --format html > patient.html
    """
    from registry.derive.timeline import patient_timeline

    if fmt == "html":
        from registry.reports.patient import patient_page

        click.echo(patient_page(ctx.ready_engine(), patient_key), nl=False)
        return

    head, entries = patient_timeline(ctx.ready_engine(), patient_key)
    if fmt == "json":
        echo_json(
            {
                "patient": head,
                "timeline": [{"date": e.date.isoformat(), "kind": e.kind, "text": e.text} for e in entries],
            }
        )
        return
    for k, v in head.items():
        click.echo(f"{k:<26} {v}")
    click.echo("")
    for e in entries:
        click.echo(f"{e.date.isoformat()}  {e.kind:<10} {e.text}")


@patient.command("history")
@click.argument("patient_key")
@format_option("text", "json")
@pass_ctx
@handle_errors
def patient_history_cmd(ctx: Context, patient_key: str, fmt: str) -> None:
    """What each run changed in one patient's loaded records (the audit trail).

    Per run: the records added, changed (with the columns that changed), reinstated or
    retired, by file and pseudonymous record key; values and identifiers are never shown.
    PATIENT_KEY is the pseudonym (or a unique prefix of it).

    Example: registry patient history 3f29a1c0
    """
    from registry.db.history import patient_history

    key, runs = patient_history(ctx.ready_engine(), patient_key)
    if fmt == "json":
        echo_json({"patient_key": key, "runs": [r.to_json() for r in runs]})
        return
    click.echo(f"patient {key}")
    for run in runs:
        click.echo(f"\nrun {run.run_id}  {run.started_at}  data cutoff {run.data_cutoff or '-'}")
        for c in run.changes:
            cols = f" ({', '.join(c['columns'])})" if c["columns"] else ""
            click.echo(f"  {c['action']:<10} {c['file']:<16} {c['record'][:12]}{cols}")
    if not runs:
        click.echo("no recorded changes (loaded before the change log existed)")
