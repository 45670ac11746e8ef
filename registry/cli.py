"""The ``registry`` command: thin click commands grouped by noun. Each parses options, calls
one library function and renders its result. Errors derived from ``RegistryError`` become one
clear line on stderr and a documented exit code (docs/operations.md) — here, in one place."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from registry import __version__
from registry.config import Settings, load_settings
from registry.errors import EXIT_USAGE, RegistryError

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, database_url: str | None, config_file: str | None) -> None:
        self._database_url = database_url
        self._config_file = config_file
        self._settings: Settings | None = None
        self._engine = None

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._database_url, self._config_file)
        return self._settings

    def engine(self):  # type: ignore[no-untyped-def]
        from registry.database import make_engine

        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine


def handle_errors(fn: F) -> F:
    """Turn user errors into one line on stderr and their exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RegistryError as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="registry")
@click.option(
    "--database-url",
    metavar="URL",
    help="Database URL (default: $REGISTRY_DATABASE_URL, config file, sqlite:///registry.db).",
)
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    help="TOML config file (default: $REGISTRY_CONFIG or ./registry.toml if present).",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, config_file: str | None) -> None:
    """Multiple myeloma transplant registry.

    \b
    Example:
      registry db upgrade && registry etl run exports/site-a-2026-06-30.zip
    """
    ctx.obj = Context(database_url, config_file)
    ctx.call_on_close(ctx.obj.close)


pass_ctx = click.make_pass_decorator(Context)


# --------------------------------------------------------------------------- db
@cli.group()
def db() -> None:
    """Create and migrate the registry database."""


@db.command("upgrade")
@click.argument("revision", default="head")
@pass_ctx
@handle_errors
def db_upgrade(ctx: Context, revision: str) -> None:
    """Migrate the schema to REVISION (default head) and load the drug vocabulary.

    Example: registry db upgrade
    """
    from registry.database import migration_state, upgrade

    engine = ctx.engine()
    upgrade(engine, revision)
    click.echo(f"database at revision {migration_state(engine).current}")


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
@handle_errors
def db_downgrade(ctx: Context, revision: str) -> None:
    """Migrate the schema down to REVISION ('base' removes everything).

    Example: registry db downgrade base
    """
    from registry.database import downgrade, migration_state

    engine = ctx.engine()
    downgrade(engine, revision)
    click.echo(f"database at revision {migration_state(engine).current or 'base'}")


@db.command("current")
@pass_ctx
@handle_errors
def db_current(ctx: Context) -> None:
    """Print the database's migration revision and the code's head.

    Example: registry db current
    """
    from registry.database import migration_state

    state = migration_state(ctx.engine())
    flag = "up to date" if state.up_to_date else "needs `registry db upgrade`"
    click.echo(f"current: {state.current or 'none'}  head: {state.head}  ({flag})")


# --------------------------------------------------------------------------- doctor
@cli.command()
@pass_ctx
@handle_errors
def doctor(ctx: Context) -> None:
    """Check configuration, database reachability and migration state.

    Never prints the pseudonym key, only whether it is set.

    Example: REGISTRY_DATABASE_URL=postgresql://postgres@127.0.0.1/registry registry doctor
    """
    from registry.doctor import diagnose

    report = diagnose(ctx.settings)
    for name, value, ok in report.lines:
        mark = "ok " if ok else "!! "
        click.echo(f"{mark}{name:<18} {value}")
    if not report.healthy:
        sys.exit(report.exit_code)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except RegistryError as exc:  # configuration errors raised outside a command body
        click.echo(f"error: {exc.message}", err=True)
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        sys.exit(exc.exit_code)


def usage_exit() -> int:
    return EXIT_USAGE
