"""`registry nightly`: the scheduler's command — a night's deliveries, derivation, reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from registry.cli.base import Context, cli, echo_json, format_option, handle_errors, pass_ctx
from registry.core.errors import NoInput


def _n(value: Any) -> str:
    return "<min-cell" if value is None else str(value)


def night_line(night: dict[str, Any]) -> str:
    """The night's one summary line, from its released JSON (counts below --min-cell show as
    '<min-cell')."""
    c = night["changes"]
    quarantined = ", ".join(f"{f} {_n(n)}" for f, n in c.get("quarantined_by_file", {}).items()) or "none"
    line = (
        f"night {night['night']}"
        + (f" (run {night['night_run']})" if night.get("night_run", 1) > 1 else "")
        + f": {c['bundles_taken']} bundle(s) loaded, {c['bundles_refused']} refused; "
        f"patients +{_n(c['patients_added'])} ~{_n(c['patients_changed'])} -{_n(c['patients_retired'])}; "
        f"deaths +{_n(c['deaths_added'])} -{_n(c['deaths_removed'])}; "
        f"relapses +{_n(c['relapses_added'])} -{_n(c['relapses_removed'])}; "
        f"second lines +{_n(c['second_lines_added'])} -{_n(c['second_lines_removed'])}; "
        f"quarantined rows: {quarantined}"
    )
    if night.get("fatal_checks"):
        line += f"; FATAL data-quality checks failed: {', '.join(night['fatal_checks'])}"
    return line


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
    (what changed since the last night, every count gross: added and removed apart; a
    same-day re-run writes changes-2.json beside it); the last --keep-nights nights are kept.
    One summary line on stdout (also under cron), then one line per problem. Exit codes:
    0 every bundle loaded and every report written, 65 a bundle or report refused or a fatal
    data-quality check failed (named on the summary and at the top of every report), 69
    database unreachable, 75 another run holds the lock, 78 configuration, 70 a bug.

    Example: registry nightly --inbox /srv/registry/inbox --reports /srv/registry/reports
    """
    from jobs.nightly import run_night

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
        resources=ctx.settings.resources,
    )
    if fmt == "json":
        echo_json(result.to_json())
    else:
        if not ctx.quiet:
            click.echo(night_line(result.to_json()))
        for problem in result.problems:  # also under --quiet: they are why the night failed
            click.echo(f"  {problem}", err=ctx.quiet)
    sys.exit(result.exit_code)
