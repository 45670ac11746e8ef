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


def _mark(conn: Connection) -> str:
    """The DB-API parameter placeholder of the engine."""
    return "%s" if conn.dialect.name == "postgresql" else "?"


def update_rows(
    conn: Connection, table: str, columns: Sequence[str], keys: Sequence[str], rows: Iterable[tuple]
) -> int:
    """Update rows given as full tuples in ``columns`` order, matched on the ``keys`` columns
    (one ``executemany`` through the DB-API cursor)."""
    key_pos = [columns.index(k) for k in keys]
    set_pos = [i for i, c in enumerate(columns) if c not in keys]
    params = [tuple(r[i] for i in set_pos) + tuple(r[i] for i in key_pos) for r in rows]
    if not params:
        return 0
    mark = _mark(conn)
    sets = ", ".join(f"{columns[i]} = {mark}" for i in set_pos)
    where = " AND ".join(f"{k} = {mark}" for k in keys)
    return _many(conn, f"UPDATE {table} SET {sets} WHERE {where}", params)


def delete_rows(conn: Connection, table: str, keys: Sequence[str], values: Iterable[tuple]) -> int:
    """Delete the rows whose ``keys`` columns hold the given value tuples."""
    params = list(values)
    if not params:
        return 0
    mark = _mark(conn)
    where = " AND ".join(f"{k} = {mark}" for k in keys)
    return _many(conn, f"DELETE FROM {table} WHERE {where}", params)


def _many(conn: Connection, sql: str, params: list[tuple]) -> int:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        cur.executemany(sql, params)
    finally:
        cur.close()
    return len(params)


def refresh_statistics(conn: Connection, changed: dict[str, int], share: float = 0.1) -> list[str]:
    """PostgreSQL: ``ANALYZE`` each table whose changed rows (``changed``: table -> rows
    inserted, updated or retired) pass ``share`` of its rows, or that was never analysed.
    Autovacuum would get there, but later: the derivation that follows a load reads the tables
    by batches of patient keys, and a table without statistics is planned as a full scan per
    batch (a tenth of a second each at 20,000 patients, against a hundredth with them).
    SQLite plans by its indexes without statistics. Returns the tables analysed."""
    if conn.dialect.name != "postgresql":
        return []
    done = []
    for table, n in changed.items():
        if n <= 0:
            continue
        rows = conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE relname = %s", (table,)).scalar()
        if rows is None or rows < 0 or n > share * rows:  # -1: never analysed
            conn.exec_driver_sql(f"ANALYZE {table}")
            done.append(table)
    return done
