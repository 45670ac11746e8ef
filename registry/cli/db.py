"""`registry db ...`: create, migrate and inspect the registry database."""

from __future__ import annotations

from pathlib import Path

import click

from registry.cli.base import Context, cli, echo_json, format_option, handle_errors, pass_ctx, write_output
from registry.core.errors import ConfigError, UsageError


@cli.group()
def db() -> None:
    """Create and migrate the registry database."""


@db.command("upgrade")
@click.argument("revision", default="head")
@click.option(
    "--sql",
    "sql_out",
    metavar="FILE",
    help="Write the SQL of the migrations to FILE ('-' for stdout) instead of running them.",
)
@click.option("--from", "start", metavar="REV", help="With --sql: the revision the database is at.")
@pass_ctx
@handle_errors
def db_upgrade(ctx: Context, revision: str, sql_out: str | None, start: str | None) -> None:
    """Migrate the schema to REVISION (default head), then load the drug vocabulary.

    With --sql nothing is run: the SQL goes to FILE for a DBA to review and apply
    (then `registry db stamp` is not needed: the SQL records the revision itself).

    Example: registry db upgrade
    """
    from registry.cohorts.sql import create_builtin_views
    from registry.db.database import migration_state, upgrade, upgrade_sql
    from registry.db.roles import grant_views
    from registry.db.setup import seed_reference_data
    from registry.derive.run import derivation_status

    engine = ctx.engine()
    if sql_out:
        body = upgrade_sql(engine, revision, start)
        if sql_out == "-":
            click.echo(body)
        else:
            write_output(sql_out, body)
            ctx.note(f"wrote the SQL to {sql_out}")
        return
    if start:
        raise UsageError("--from only goes with --sql")
    upgrade(engine, revision)
    state = migration_state(engine)
    click.echo(f"database at revision {state.current}")
    if state.up_to_date:
        remapped = seed_reference_data(engine)
        with engine.begin() as conn:
            create_builtin_views(conn)  # the cohorts' views follow the schema too
            grant_views(conn)
        if remapped:
            ctx.note(f"drug vocabulary: {remapped} stored treatment row(s) re-mapped")
        with engine.connect() as conn:
            message = derivation_status(conn).message
        if message:
            ctx.warn(message)


@db.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Confirm: a downgrade drops tables and their data.")
@pass_ctx
@handle_errors
def db_downgrade(ctx: Context, revision: str, yes: bool) -> None:
    """Migrate the schema down to REVISION ('base' removes everything). Needs --yes.

    Example: registry db downgrade 0002 --yes
    """
    from registry.db.database import downgrade, migration_state

    engine = ctx.existing_engine()
    if not yes:
        raise UsageError(
            f"a downgrade to {revision} removes tables or columns and the data in them",
            hint="back the database up, then add --yes",
        )
    downgrade(engine, revision)
    click.echo(f"database at revision {migration_state(engine).current or 'base'}")


@db.command("rekey")
@click.argument("bundles", nargs=-1, type=click.Path(path_type=str))
@click.option("--yes", is_flag=True, help="Confirm: every pseudonym in the registry changes.")
@pass_ctx
@handle_errors
def db_rekey(ctx: Context, bundles: tuple[str, ...], yes: bool) -> None:
    """Re-pseudonymise the registry with a new key, from the sites' current full exports.

    The current key comes from REGISTRY_PSEUDONYM_KEY (or the config file) as for a load, the
    new one from REGISTRY_NEW_PSEUDONYM_KEY (keys never go on a command line). Give one bundle
    per site; records no bundle holds any more get an unlinkable pseudonym under the new key.
    Every patient is then derived again. Afterwards set REGISTRY_PSEUDONYM_KEY to the new key.

    Example: REGISTRY_NEW_PSEUDONYM_KEY=... registry db rekey /srv/inbox/site-a.zip --yes
    """
    from etl.rekey import rekey
    from registry.derive.run import derive_pending

    new = ctx.settings.new_pseudonym_key
    if not new:
        raise ConfigError(
            "no new key: set REGISTRY_NEW_PSEUDONYM_KEY in the environment",
            hint="the current key stays in REGISTRY_PSEUDONYM_KEY (docs/operations.md, 'The pseudonym key')",
        )
    if not yes:
        raise UsageError(
            "re-keying changes every pseudonym in the registry (one transaction)",
            hint="back the database up, then add --yes",
        )
    engine = ctx.ready_engine()
    result = rekey(
        engine,
        [Path(b) for b in bundles],
        ctx.settings.require_key(),
        new.encode("utf-8"),
        limits=ctx.settings.resources.limits,
    )
    ctx.note(
        f"re-keyed {result.mapped} pseudonyms from the bundles; {result.orphaned} of records no bundle "
        "holds any more given unlinkable new pseudonyms"
    )
    derived = derive_pending(engine, workers=ctx.settings.resources.derive_workers)
    click.echo(
        f"re-keyed; {derived.patients} patients derived again. Now set REGISTRY_PSEUDONYM_KEY to the new key."
    )


@db.command("current")
@format_option("text", "json")
@pass_ctx
@handle_errors
def db_current(ctx: Context, fmt: str) -> None:
    """Print the database's migration revision and the code's head.

    Example: registry db current
    """
    from registry.db.database import migration_state

    state = migration_state(ctx.existing_engine())
    if fmt == "json":
        echo_json({"current": state.current, "head": state.head, "up_to_date": state.up_to_date})
        return
    flag = "up to date" if state.up_to_date else "needs `registry db upgrade`"
    click.echo(f"current: {state.current or 'none'}  head: {state.head}  ({flag})")


@db.command("history")
@format_option("text", "json")
@pass_ctx
@handle_errors
def db_history(ctx: Context, fmt: str) -> None:
    """List the migrations the code knows, newest first.

    Example: registry db history
    """
    from registry.db.database import history

    revisions = history(ctx.engine())
    if fmt == "json":
        echo_json([{"revision": r, "down_revision": d, "message": m} for r, d, m in revisions])
        return
    for rev, down, message in revisions:
        click.echo(f"{down or 'base':>6} -> {rev:<6} {message.splitlines()[0] if message else ''}")


@db.command("stamp")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Confirm: the database is recorded at REVISION, nothing runs.")
@pass_ctx
@handle_errors
def db_stamp(ctx: Context, revision: str, yes: bool) -> None:
    """Record REVISION as the database's migration state without running anything.

    For a database whose schema a DBA migrated by hand. Needs --yes.

    Example: registry db stamp head --yes
    """
    from registry.db.database import migration_state, stamp

    engine = ctx.existing_engine()
    if not yes:
        raise UsageError("stamping records a schema state without checking it", hint="add --yes")
    stamp(engine, revision)
    click.echo(f"database recorded at revision {migration_state(engine).current or 'base'}")


@db.command("grant-analyst")
@click.argument("role")
@click.option("--login", is_flag=True, help="Let the role log in.")
@click.option("--password-stdin", is_flag=True, help="With --login: read its password from stdin.")
@pass_ctx
@handle_errors
def db_grant_analyst(ctx: Context, role: str, login: bool, password_stdin: bool) -> None:
    """PostgreSQL: make ROLE an analyst — SELECT on the analysts' views, nothing else.

    No base table, no quarantine, no ledger, no write, no CREATE. Idempotent; the access
    survives `registry db upgrade`.

    Example: echo "$PW" | registry db grant-analyst ana --login --password-stdin
    """
    import sys

    from registry.db.roles import grant_analyst

    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    if password_stdin and not login:
        raise UsageError("--password-stdin goes with --login")
    group = grant_analyst(ctx.ready_engine(), role, login=login, password=password)
    click.echo(f"{role} can read the analysts' views (through {group})")


@db.command("revoke-analyst")
@click.argument("role")
@pass_ctx
@handle_errors
def db_revoke_analyst(ctx: Context, role: str) -> None:
    """PostgreSQL: take ROLE out of this registry's analysts.

    Example: registry db revoke-analyst ana
    """
    from registry.db.roles import revoke_analyst

    revoke_analyst(ctx.ready_engine(), role)
    click.echo(f"{role} is no longer an analyst of this registry")


@db.command("analyst-copy")
@click.argument("out", type=click.Path(dir_okay=False, path_type=str))
@pass_ctx
@handle_errors
def db_analyst_copy(ctx: Context, out: str) -> None:
    """SQLite: write OUT, a new file holding only the analysts' views' data.

    Example: registry db analyst-copy for-analysts.db
    """
    from pathlib import Path

    from registry.cli.base import check_output
    from registry.db.roles import analyst_copy

    check_output(out)
    tables = analyst_copy(ctx.ready_engine(), Path(out))
    click.echo(f"wrote {out}: {', '.join(tables)}")


@db.command("dictionary")
@format_option("md", "csv", "json", default="md")
def db_dictionary(fmt: str) -> None:
    """The data dictionary: every analysts' view and table, column by column.

    Example: registry db dictionary --format csv > dictionary.csv
    """
    from registry.cohorts.definition import builtin_names, load_definition
    from registry.cohorts.sql import view_descriptions, view_name
    from registry.db.dictionary import dictionary, render

    cohorts = [load_definition(name) for name in builtin_names()]
    entries = dictionary([(view_name(d), view_descriptions(d)) for d in cohorts])
    click.echo(render(entries, fmt), nl=False)
