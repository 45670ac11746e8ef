"""PostgreSQL stages chunks as CSV blocks that Arrow writes from the rows' columns (in the
checking workers), not as a Python tuple a row: every value reaches the database as it was
(texts with quotes, commas, line breaks and accents; an empty text apart from a null; numbers
exactly), and a bundle loaded so ends as the registry loaded from tuples."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from etl import load
from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.db.bulk import copy_csv, csv_block
from tests.conftest import TEST_KEY
from tests.etl.bundles import read_csv, write_csv
from tests.etl.test_parallel_check import calls_to, same_registry

KEY = TEST_KEY.encode()
# what a stored text can hold (PostgreSQL's text holds no NUL; the contract rejects it first)
TEXT = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=15)
ROW = st.fixed_dictionaries(
    {
        "t": st.one_of(st.none(), TEXT),
        "i": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        "f": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
        "b": st.one_of(st.none(), st.booleans()),
        "d": st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2262, 1, 1)).map(dt.date.isoformat)),
    }
)


# CSV blocks are PostgreSQL's staging path (SQLite stages tuples)
pytestmark = pytest.mark.engines("postgresql")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=25), arrow_text=st.booleans())
def test_a_csv_block_reaches_postgresql_value_for_value(
    engine: Engine, rows: list[dict[str, Any]], arrow_text: bool
) -> None:
    frame = pd.DataFrame(rows, columns=["t", "i", "f", "b", "d"], dtype=object)
    if arrow_text:  # ids and text come as Arrow strings from the reader
        frame["t"] = frame["t"].astype(pd.StringDtype("pyarrow"))
    frame["n"] = range(len(frame))
    with engine.connect() as conn:
        trans = conn.begin()
        conn.exec_driver_sql(
            "CREATE TEMPORARY TABLE blk (t text, i bigint, f double precision, b boolean, d date, n int)"
        )
        copy_csv(
            conn, "blk", ["t", "i", "f", "b", "d", "n"], csv_block(frame, ["t", "i", "f", "b", "d", "n"])
        )
        back = conn.execute(text("SELECT t, i, f, b, d, n FROM blk ORDER BY n")).all()
        trans.rollback()
    assert len(back) == len(rows)
    for row, (t, i, f, b, d, _n) in zip(rows, back, strict=True):
        assert (t, i, b) == (row["t"], row["i"], row["b"])
        assert (d.isoformat() if d else None) == row["d"]
        assert f == row["f"] and (f is None or math.copysign(1, f) == math.copysign(1, row["f"]))


def test_a_bundle_staged_as_csv_blocks_ends_as_one_staged_as_tuples(
    engine: Engine, twin: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    write_bundle(bundle, patients=80, seed=23, dirty=True)
    fields, rows = read_csv(bundle / "treatments.csv")
    rows[2]["drug"] = "Dexamethasone, oral"  # quoted in the file
    rows[4]["drug"] = "Lénalidomide"
    write_csv(bundle / "treatments.csv", fields, rows)
    blocks = calls_to(monkeypatch, load, "staged_csv")
    a = run_bundle(engine, bundle, KEY, chunk_rows=41)
    staged = sum(len(frame) for _name, frame in blocks)
    assert len(blocks) > 10 and staged >= sum(f.loaded for f in a.files.values())

    monkeypatch.setattr(load, "staged_csv", load.staged_tuples)  # the tuples' path
    b = run_bundle(twin, bundle, KEY, chunk_rows=41)
    assert a.files == b.files
    assert same_registry(engine, twin)
