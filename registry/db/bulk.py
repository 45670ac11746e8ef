"""Bulk insert of prepared tuples: psycopg ``COPY`` on PostgreSQL, one ``executemany`` on
SQLite (the fastest paths measured on this kind of machine). Runs inside the caller's
transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection


def copy_rows(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[tuple]) -> int:
    """Bulk-insert tuples: COPY on PostgreSQL, executemany on SQLite."""
    rows = list(rows)
    if not rows:
        return 0
    cols = ", ".join(columns)
    raw = conn.connection.dbapi_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as cp:  # type: ignore[attr-defined]
            for row in rows:
                cp.write_row(row)
    else:
        marks = ", ".join("?" for _ in columns)
        cur = raw.cursor()
        cur.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
        cur.close()
    return len(rows)
