"""Large query results as compact frames: read a chunk of rows at a time (a server-side cursor
on PostgreSQL), each chunk made compact before the next is read (dates as dates, each distinct
value one shared object), so a report holds the frame of a million patients, never the driver's
rows of all of them at once."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

# rows taken from the driver at a time: 100,000 patients' cohort read on PostgreSQL grows the
# process by 140 MB in chunks of 10,000 rows, by 400 MB in chunks of 50,000 (or all at once)
CHUNK_ROWS = 10_000
TRIM_EVERY = 8  # chunks between two hand-backs of the C heap's free pages (_give_back)


def _shared(col: pd.Series) -> pd.Series:
    """An object column whose equal values are one object each (a registry's dates, stages and
    regimen names repeat: a million patients hold a few thousand distinct values, not a million
    copies); missing values and the column's type are kept as they are."""
    codes, uniques = pd.factorize(col.to_numpy(dtype=object))
    if len(uniques) * 2 > len(col):  # mostly distinct (the keys): nothing to share
        return col
    out = col.to_numpy(dtype=object, copy=True)
    known = codes >= 0
    out[known] = np.asarray(uniques, dtype=object)[codes[known]]
    return pd.Series(out, index=col.index, name=col.name, dtype=object)


def as_dates(col: pd.Series, days: dict[object, object] | None = None) -> pd.Series:
    """ISO strings (SQLite) or dates (PostgreSQL) as ``datetime.date`` objects, NaT where
    missing, each distinct day converted (and held) once: once a column, or once a read when
    its chunks share ``days`` (a million patients' dates hold a few thousand days)."""
    days = {} if days is None else days
    codes, uniques = pd.factorize(col.to_numpy(dtype=object))
    new = [u for u in uniques if u not in days]
    if new:
        days.update(zip(new, pd.to_datetime(pd.Series(new, dtype=object)).dt.date, strict=True))
    out = np.full(len(col), pd.NaT, dtype=object)
    known = codes >= 0
    out[known] = np.array([days[u] for u in uniques], dtype=object)[codes[known]]
    return pd.Series(out, index=col.index, name=col.name, dtype=object)


def _compact(chunk: pd.DataFrame, dates: tuple[str, ...], days: dict[object, object]) -> pd.DataFrame:
    for c in chunk.columns:
        if c in dates:
            chunk[c] = as_dates(chunk[c], days)
        elif chunk[c].dtype == object:
            chunk[c] = _shared(chunk[c])
    return chunk


def _give_back() -> None:
    """Hand the C heap's free pages back to the system (glibc): the driver's rows of every
    chunk were allocated and freed there, and without this the process keeps their pages."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to hand back
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def join_chunks(chunks: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The chunks as one frame with the types one read of every row gives (a column numeric in
    one chunk and all missing in another is numeric with NaN), joined a column at a time and
    each column's chunks let go once joined: the rows are never held twice over."""
    parts = {c: [ch[c].to_numpy() for ch in chunks] for c in columns}
    chunks.clear()
    data: dict[str, np.ndarray] = {}
    for c in columns:
        arrays = parts.pop(c)
        if any(a.dtype.kind in "iuf" for a in arrays):
            arrays = [a.astype(float) if a.dtype == object and pd.isna(a).all() else a for a in arrays]
        data[c] = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    return pd.DataFrame(data, columns=columns, copy=False)  # a block a column: no copy to stack


def read_frame(
    engine: Engine,
    sql: str,
    dates: tuple[str, ...] = (),
    chunk_rows: int | None = None,
    each: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """A query's rows as a frame, read ``chunk_rows`` at a time (a server-side cursor on
    PostgreSQL), each chunk made compact before the next is read (``dates`` as dates, repeated
    values shared), so the memory held is the frame's, not the driver's rows of every patient.
    ``each`` sees every chunk as read and returns the rows to keep."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    chunks: list[pd.DataFrame] = []
    columns: list[str] = []
    days: dict[object, object] = {}  # every distinct day of the read, converted once
    with engine.connect() as conn:
        streamed = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows)
        for chunk in pd.read_sql_query(text(sql), streamed, chunksize=chunk_rows):
            columns = list(chunk.columns)
            kept = each(chunk) if each is not None else chunk
            chunks.append(_compact(kept.reset_index(drop=True), dates, days))  # no row: one empty chunk
            if len(chunks) % TRIM_EVERY == 0:
                _give_back()
    frame = join_chunks(chunks, columns)
    _give_back()
    return frame
