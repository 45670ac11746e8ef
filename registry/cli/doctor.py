"""`registry doctor`: what configuration is in force and whether the registry is usable."""

from __future__ import annotations

import sys

import click

from registry.cli.base import Context, cli, echo_json, format_option, handle_errors, pass_ctx


@cli.command()
@format_option("text", "json")
@pass_ctx
@handle_errors
def doctor(ctx: Context, fmt: str) -> None:
    """Check configuration, database, migrations, derivations and the last run.

    Never prints the pseudonym key, only whether it is set. Exits with the code of the first
    failed check (see docs/operations.md), 0 when all pass.

    Example: REGISTRY_DATABASE_URL=postgresql://postgres@127.0.0.1/registry registry doctor
    """
    from etl.doctor import diagnose

    report = diagnose(ctx.settings)
    if fmt == "json":
        echo_json(report.to_json())
    else:
        for name, value, ok in report.lines:
            mark = "ok " if ok else "!! "
            click.echo(f"{mark}{name:<18} {value}")
    if not report.healthy:
        sys.exit(report.exit_code)
