"""The settings every connection of the registry gets, on each engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from registry.db.database import make_engine


def test_every_sqlite_connection_gets_the_registry_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    with engine.connect() as conn:
        got = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "cache_size", "journal_size_limit")
        }
    engine.dispose()
    assert got == {
        "journal_mode": "wal",  # readers go on while a load writes
        "foreign_keys": 1,
        "busy_timeout": 30000,
        "cache_size": -131072,  # 128 MiB
        "journal_size_limit": 67108864,  # the log shrinks back to 64 MiB after a large write
    }


@pytest.mark.engines("postgresql")
def test_every_postgresql_connection_compiles_no_query_just_in_time(engine: Engine) -> None:
    """The cohort query's estimated cost passes PostgreSQL's JIT thresholds, and compiling it
    cost more than running it: every connection the registry opens has JIT off, also one that
    was rolled back or reused from the pool."""
    for _ in range(2):
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
            conn.rollback()
    with engine.begin() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
