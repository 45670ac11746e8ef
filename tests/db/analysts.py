"""Analyst roles in tests: connect as one, and drop it and its group afterwards (roles belong
to the server, not to the test database)."""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url


def as_role(db_url: str, role: str) -> Engine:
    """An engine that connects to the test database as ``role`` (trust authentication)."""
    return create_engine(make_url(db_url).set(username=role, password=None), isolation_level="AUTOCOMMIT")


def drop_analyst_roles(engine: Engine, role: str) -> None:
    """Drop ``role`` and the database's analysts' group, with what they own or were granted."""
    with engine.connect() as conn:
        group = str(conn.execute(text("SELECT current_database()")).scalar()) + "_analysts"
        for name in (role, group):
            conn.execute(text(f"DROP OWNED BY {name}"))
            conn.execute(text(f"DROP ROLE IF EXISTS {name}"))
        conn.commit()
