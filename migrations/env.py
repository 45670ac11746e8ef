"""Alembic environment: batch mode on SQLite, the models' metadata as the target."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from alembic import context
from sqlalchemy import String, create_engine

from registry.db.models import Base

config = context.config
target_metadata = Base.metadata


def _compare_type(context, inspected_column, metadata_column, inspected_type, metadata_type):  # type: ignore[no-untyped-def]
    """SQLite does not enforce a ``VARCHAR``'s length: two string types are the same column
    there (0021 cut the pseudonyms to 32 characters without rebuilding every
    SQLite table that declared 64). Anything else: Alembic's own comparison."""
    if (
        context.dialect.name == "sqlite"
        and isinstance(inspected_type, String)
        and isinstance(metadata_type, String)
    ):
        return False  # (both have SQLite's TEXT affinity; PostgreSQL's check still sees lengths)
    return None


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=_compare_type,
    )


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=str(config.get_main_option("sqlalchemy.url")).startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


@contextlib.contextmanager
def _sqlite_foreign_keys_off(connection) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """SQLite rebuilds a table to change a column (batch mode: copy, drop, rename). With foreign
    keys on, dropping the old table would delete (cascade) the rows that refer to it, so they
    are off while the migrations run and checked before they are on again (SQLite's own recipe
    for schema changes). The pragma only takes effect outside a transaction: on a connection
    already in one (a caller's) nothing changes."""
    raw = connection.connection.dbapi_connection if connection.dialect.name == "sqlite" else None
    if raw is None or connection.in_transaction():
        yield
        return
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = raw.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"a migration left {len(broken)} rows with broken foreign keys")
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with _sqlite_foreign_keys_off(connection), context.begin_transaction():
            context.run_migrations()
        return
    engine = config.attributes.get("engine") or create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn, _sqlite_foreign_keys_off(conn):
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
