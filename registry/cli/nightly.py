"""`registry nightly`: the scheduler's command — a night's deliveries, derivation, reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from registry.cli.base import Context, cli, echo_json, format_option, handle_errors, pass_ctx
from registry.core.errors import NoInput


@cli.command()
@click.option(
    "--inbox", required=True, type=click.Path(file_okay=False, path_type=str), help="Where sites deliver."
)
@click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False, path_type=str),
    help="Report folders go here.",
)
@click.option("--keep-nights", type=click.IntRange(min=1), default=14, show_default=True)
@click.option("--min-cell", type=click.IntRange(min=1), help="Suppress counts below N in the reports.")
@format_option("text", "json")
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    help="Log each event on stderr (default: only on a terminal, plain).",
)
@pass_ctx
@handle_errors
def nightly(
    ctx: Context,
    inbox: str,
    reports_dir: str | None,
    keep_nights: int,
    min_cell: int | None,
    fmt: str,
    log_format: str | None,
) -> None:
    """Load every bundle in INBOX once (per site, oldest export first), derive, write reports.

    Loaded bundles move to INBOX/processed/<night>/, refused ones to INBOX/rejected/<night>/
    with a .reason.txt. With --reports, <night>/ gets the study reports and changes.json
    (what changed since the last night); the last --keep-nights nights are kept. Exit codes:
    0 every bundle loaded, 65 one or more refused, 69 database unreachable, 75 another run
    holds the lock, 78 configuration, 70 a bug.

    Example: registry nightly --inbox /srv/registry/inbox --reports /srv/registry/reports
    """
    from etl.nightly import run_night

    folder = Path(inbox)
    if not folder.is_dir():
        raise NoInput(f"inbox {inbox} does not exist")
    key = ctx.settings.require_key()
    if ctx.settings.report_group:  # checked before the night starts
        from registry.core.files import group_id

        group_id(ctx.settings.report_group)
    style = log_format or ("plain" if ctx.interactive else None)

    def log(event: str, fields: dict[str, Any]) -> None:
        if style == "json":
            click.echo(json.dumps({"event": event, **fields}, default=str), err=True)
        elif style == "plain":
            click.echo(f"{event}: " + ", ".join(f"{k}={v}" for k, v in fields.items()), err=True)

    result = run_night(
        ctx.ready_engine(),
        folder,
        key,
        reports_dir=Path(reports_dir) if reports_dir else None,
        keep_nights=keep_nights,
        min_cell=min_cell,
        dq_thresholds=ctx.settings.dq_thresholds,
        log=log,
        report_group=ctx.settings.report_group,
    )
    if fmt == "json":
        echo_json(result.to_json())
    elif not ctx.quiet:
        c = result.changes
        click.echo(
            f"night {result.night}: {c['bundles_taken']} bundle(s) loaded, {c['bundles_refused']} refused; "
            f"patients +{c['patients_added']}, changed {c['patients_changed']}, "
            f"retired {c['patients_retired']}; deaths +{c['deaths_added']}, "
            f"relapses +{c['relapses_added']}, second lines +{c['second_lines_added']}"
        )
        for b in result.bundles:
            if b.status != "succeeded":
                click.echo(f"  refused {b.path}: {b.message}")
    sys.exit(result.exit_code)
