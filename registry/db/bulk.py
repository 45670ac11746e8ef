"""Bulk insert of prepared tuples: psycopg ``COPY`` on PostgreSQL, one ``executemany`` on
SQLite (the fastest paths measured on this kind of machine); on PostgreSQL also ``COPY`` of a
CSV block written from a frame's columns at once. Runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
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


def csv_block(frame: pd.DataFrame, columns: Sequence[str]) -> bytes:
    """The frame's ``columns`` as CSV records for ``copy_csv`` (no database: a worker process
    can write them): formatted by Arrow's CSV writer, column by column, without a Python tuple
    a row. Every value is quoted and a null is an unquoted empty field, so PostgreSQL tells an
    empty text from a null; numbers are written in their shortest exact form."""
    if frame.empty:
        return b""
    table = pa.table({c: pa.array(frame[c], from_pandas=True) for c in columns})
    out = pa.BufferOutputStream()
    pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return bytes(out.getvalue())


def copy_csv(conn: Connection, table: str, columns: Sequence[str], block: bytes) -> None:
    """PostgreSQL: copy a block of CSV records (every value quoted, a null unquoted and empty:
    what ``csv_block`` writes) into ``table``, in the caller's transaction."""
    if not block:
        return
    raw = conn.connection.dbapi_connection
    assert raw is not None and conn.dialect.name == "postgresql"
    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)"
    with raw.cursor() as cur, cur.copy(sql) as cp:  # type: ignore[attr-defined]
        cp.write(block)


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
