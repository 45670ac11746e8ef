"""The ``registry`` command group, its shared context and the one place where errors become
exit codes (docs/operations.md, generated from ``registry.core.errors``).

Every command runs under ``RegistryGroup.main``: a ``RegistryError`` becomes one line (and a
hint) on stderr and its exit code; click's usage errors exit 64; anything else is a bug: its
traceback goes to stderr and the exit code is 70. Commands never print tracebacks themselves.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from registry import __version__
from registry.core.config import Settings, load_settings
from registry.core.errors import EXIT_INTERRUPTED, EXIT_SOFTWARE, EXIT_USAGE, OutputError, RegistryError

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What every command shares: the settings (read lazily) and one engine."""

    def __init__(self, database_url: str | None, config_file: str | None, quiet: bool = False) -> None:
        self._database_url = database_url
        self._config_file = config_file
        self._settings: Settings | None = None
        self._engine = None
        self.quiet = quiet

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self._database_url, self._config_file)
        return self._settings

    def engine(self):
        """The engine for commands that may create the database (``db upgrade``)."""
        from registry.db.database import make_engine

        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    def existing_engine(self):
        """The engine, refusing (78) to create an empty SQLite file as a side effect."""
        from registry.db.database import require_existing_database

        engine = self.engine()  # checks the URL and the driver; connects to nothing yet
        require_existing_database(self.settings.database_url)
        return engine

    def ready_engine(self):
        """The engine, after checking the database exists, is reachable (69) and migrated (78)."""
        from registry.db.database import require_current_schema

        engine = self.existing_engine()
        require_current_schema(engine)
        return engine

    def warn(self, message: str) -> None:
        """A warning on stderr (always: warnings are what cron should mail)."""
        click.echo(f"warning: {message}", err=True)

    def note(self, message: str) -> None:
        """Information on stderr, left out under ``--quiet``."""
        if not self.quiet:
            click.echo(message, err=True)

    @property
    def interactive(self) -> bool:
        """Progress is shown only on a terminal and never under ``--quiet``."""
        return sys.stderr.isatty() and not self.quiet


def exit_with(exc: RegistryError) -> None:
    """One line (and a hint) on stderr, then the error's documented exit code."""
    from registry.core.errors import Interrupted

    click.echo(exc.message if isinstance(exc, Interrupted) else f"error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)
    sys.exit(exc.exit_code)


def handle_errors(fn: F) -> F:
    """Turn user errors into one line on stderr and their exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import OperationalError

        from registry.db.database import lost_or_full

        try:
            return fn(*args, **kwargs)
        except RegistryError as exc:
            exit_with(exc)
        except OperationalError as exc:  # the server went away, or the disk filled, mid-run
            known = lost_or_full(exc)
            if known is None:
                raise
            exit_with(known)

    return wrapper  # type: ignore[return-value]


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(data, indent=2, default=str))


def check_output(out: str) -> Path:
    """An output path whose folder exists (else exit 73, before any work is done)."""
    path = Path(out)
    if not path.parent.exists():
        raise OutputError(f"cannot write {out}: folder {path.parent} does not exist")
    if path.is_dir():
        raise OutputError(f"cannot write {out}: it is a folder")
    return path


def write_output(out: str, body: str) -> None:
    """Write a command's output file; a missing folder or a refused write is exit 73."""
    path = check_output(out)
    try:
        path.write_text(body, encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror}") from None


def format_option(*choices: str, default: str = "text") -> Callable[[F], F]:
    """The shared ``--format`` option."""
    return click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default=default, show_default=True
    )


class RegistryGroup(click.Group):
    """A click group whose ``main`` keeps the exit-code contract for every command."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except click.exceptions.UsageError as exc:  # bad option, missing argument, bad value
            exc.show()
            sys.exit(EXIT_USAGE)
        except click.exceptions.Abort as exc:
            if isinstance(exc.__context__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
                click.echo("interrupted", err=True)
                sys.exit(EXIT_INTERRUPTED)
            click.echo("aborted", err=True)
            sys.exit(1)
        except click.exceptions.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except RegistryError as exc:  # raised outside a command body (e.g. settings)
            exit_with(exc)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug: say so, keep the traceback for the report
            click.echo(
                f"internal error ({type(exc).__name__}): this is a bug in the registry; "
                "the traceback follows",
                err=True,
            )
            traceback.print_exc(file=sys.stderr)
            sys.exit(EXIT_SOFTWARE)
        sys.exit(rv if isinstance(rv, int) else 0)


PRIVATE_UMASK = 0o077


@click.group(cls=RegistryGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr (for cron).")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, config_file: str | None, quiet: bool) -> None:
    """Multiple myeloma transplant registry.

    \b
    Example:
      registry db upgrade && registry etl run exports/site-a-2026-06-30.zip
    """
    ctx.obj = Context(database_url, config_file, quiet)
    ctx.call_on_close(ctx.obj.close)
    # everything the command creates — the SQLite registry, its lock, reports, exports, moved
    # bundles — is private to the registry's account (files 0600, folders 0700)
    previous = os.umask(PRIVATE_UMASK)
    ctx.call_on_close(lambda: os.umask(previous))


pass_ctx = click.make_pass_decorator(Context)


def main() -> None:
    """The ``registry`` console script."""
    cli()
