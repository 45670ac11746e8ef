"""Analysts' access: on PostgreSQL a role that can read the analysts' views and nothing else;
on SQLite a copy of the views' data to hand over instead of the registry file.

On PostgreSQL the views' SELECT privilege goes to a group role of the database
(``<database>_analysts``); each analyst role is a member. Recreating the views (every
``registry db upgrade``) grants them to the group again, so analysts keep their access."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from registry.core.errors import UsageError
from registry.db.views import VIEWS

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str) -> str:
    if not _ROLE.match(name):
        raise UsageError(
            f"{name!r} is not a role name this command accepts", hint="lower case letters, digits, _"
        )
    return name


def analyst_group(conn: Connection) -> str:
    """The group role holding the SELECT privilege on this database's views."""
    database = str(conn.execute(text("SELECT current_database()")).scalar())
    return _ident(re.sub(r"[^a-z0-9_]", "_", database.lower())[:54] + "_analysts")


def _role_exists(conn: Connection, role: str) -> bool:
    return bool(conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first())


def grant_views(conn: Connection) -> None:
    """Give the analysts' group (when it exists) SELECT on every analysts' and cohort view."""
    if conn.dialect.name != "postgresql":
        return
    group = analyst_group(conn)
    if not _role_exists(conn, group):
        return
    names = [v.name for v in VIEWS]
    names += [
        r[0]
        for r in conn.execute(
            text(
                "SELECT viewname FROM pg_views "
                "WHERE schemaname = current_schema() AND viewname LIKE 'cohort\\_%'"
            )
        )
    ]
    for name in names:
        conn.exec_driver_sql(f"GRANT SELECT ON {name} TO {group}")


def grant_analyst(engine: Engine, role: str, *, login: bool = False, password: str | None = None) -> str:
    """Create (or update) ``role`` as an analyst of this registry: SELECT on the views, nothing
    else — no base table, no quarantine, no ledger, no write, no CREATE. Idempotent.

    Returns the analysts' group role the role is a member of."""
    role = _ident(role)
    if engine.dialect.name != "postgresql":
        raise UsageError(
            "analyst roles exist on PostgreSQL only", hint="on SQLite use `registry db analyst-copy OUT.db`"
        )
    with engine.begin() as conn:
        group = analyst_group(conn)
        if not _role_exists(conn, group):
            conn.exec_driver_sql(f"CREATE ROLE {group} NOLOGIN")
        if not _role_exists(conn, role):
            conn.exec_driver_sql(f"CREATE ROLE {role} NOLOGIN")
        if login:
            conn.exec_driver_sql(f"ALTER ROLE {role} LOGIN")
            if password:
                quoted = "'" + password.replace("'", "''") + "'"
                conn.exec_driver_sql(f"ALTER ROLE {role} PASSWORD {quoted}")
        database = str(conn.execute(text("SELECT current_database()")).scalar())
        conn.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{database}" TO {group}')
        # no temporary tables or functions either: TEMP on a database is PUBLIC's by default, so
        # it is taken from PUBLIC and kept by the registry's own role (its loads stage in
        # temporary tables)
        conn.exec_driver_sql(f'GRANT TEMPORARY ON DATABASE "{database}" TO CURRENT_USER')
        conn.exec_driver_sql(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM PUBLIC')
        conn.exec_driver_sql(f'REVOKE TEMPORARY ON DATABASE "{database}" FROM {group}, {role}')
        conn.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {group}")
        for who in (group, role):
            conn.exec_driver_sql(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {who}")
            conn.exec_driver_sql(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {who}")
            conn.exec_driver_sql(f"REVOKE CREATE ON SCHEMA public FROM {who}")
        grant_views(conn)
        conn.exec_driver_sql(f"GRANT {group} TO {role}")
    return group


def revoke_analyst(engine: Engine, role: str) -> None:
    """Take ``role`` out of this registry's analysts (the role itself is kept)."""
    role = _ident(role)
    if engine.dialect.name != "postgresql":
        raise UsageError("analyst roles exist on PostgreSQL only")
    with engine.begin() as conn:
        group = analyst_group(conn)
        if _role_exists(conn, group) and _role_exists(conn, role):
            conn.exec_driver_sql(f"REVOKE {group} FROM {role}")


def analyst_copy(engine: Engine, out: Path) -> list[str]:
    """A new SQLite file holding only the data of the analysts' views (one table per view):
    the way to hand a SQLite registry to an analyst. Returns the tables written."""
    if engine.dialect.name != "sqlite":
        raise UsageError(
            "analyst copies are made from a SQLite registry", hint="on PostgreSQL use grant-analyst"
        )
    if out.exists():
        raise UsageError(f"{out} exists", hint="choose a new file")
    names = [v.name for v in VIEWS]
    raw = engine.raw_connection()  # ATTACH must run outside a transaction
    try:
        cur = raw.cursor()
        cur.execute("ATTACH DATABASE ? AS analyst", (str(out),))
        try:
            cur.execute("BEGIN")
            for name in names:
                cur.execute(f"CREATE TABLE analyst.{name} AS SELECT * FROM main.{name}")
            cur.execute("COMMIT")
        finally:
            cur.execute("DETACH DATABASE analyst")
        cur.close()
    finally:
        raw.close()
    return names
