"""Lines without quotes are split into fields by Arrow's CSV reader (Arrow string columns);
records read after a quote by the csv module (object columns). Both give the same strings, and
a bundle loaded through either ends as the same registry, row for row."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from etl import extract
from etl.extract import _Fields
from etl.pipeline import run_bundle
from etl.synth import write_bundle
from tests.conftest import TEST_KEY
from tests.etl.bundles import read_csv, write_csv
from tests.etl.test_parallel_check import calls_to, same_registry

KEY = TEST_KEY.encode()

# anything but the separator, quotes and line breaks: what a quote-free line's field can hold
# (spaces and tabs at the edges, NUL, accents, non-BMP characters, Python-only whitespace)
FIELD = st.text(
    alphabet=st.characters(blacklist_characters=',"\r\n', blacklist_categories=("Cs",)),
    max_size=12,
)
ENDING = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def quote_free_chunk(draw: st.DrawFn) -> tuple[list[str], int]:
    width = draw(st.integers(min_value=1, max_value=5))
    rows = draw(st.lists(st.lists(FIELD, min_size=width, max_size=width), min_size=1, max_size=30))
    # a line that is nothing but whitespace is blank: the reader drops those before this point
    rows = [r for r in rows if "".join(r).strip() or width > 1]
    if not rows:
        rows = [["x"] * width]
    lines = [",".join(r) + draw(ENDING) for r in rows]
    if draw(st.booleans()):
        lines[-1] = lines[-1].rstrip("\r\n")  # the file's last line, without a line break
    return lines, width


@settings(max_examples=300, deadline=None)
@given(quote_free_chunk(), st.booleans(), st.data())
def test_arrow_splits_quote_free_lines_as_the_csv_module_does(
    chunk: tuple[list[str], int], padded: bool, data: st.DataObject
) -> None:
    lines, width = chunk
    columns = [f"c{i}" for i in range(width)]
    # the contract's columns: some of the header's (in any order) and one the file lacks
    some = data.draw(st.permutations(columns))[: data.draw(st.integers(1, width))]
    wanted = [*some, "missing"]
    numbers = list(range(2, 2 + len(lines)))
    by_arrow = _Fields([], lines, numbers, columns, wanted, padded).frame()
    records = list(csv.reader(lines, strict=True))
    by_csv = _Fields(records, [], numbers, columns, wanted, padded).frame()
    assert all(str(t) == "string" for t in by_arrow.dtypes)  # Arrow strings: it took that path
    assert list(by_arrow.columns) == wanted
    assert list(by_arrow.index) == numbers
    pd.testing.assert_frame_equal(by_arrow.astype(object), by_csv, check_dtype=False)


def test_arrow_refuses_a_chunk_whose_row_count_differs_from_its_lines() -> None:
    # the reader hands on one record a line; should Arrow ever count other rows (here two
    # records in what was handed on as one line), its columns are not used: the csv module
    # splits the lines (the load below forces that path)
    assert extract._arrow_columns(["a,b\n", "c,d\n"], 2) is not None
    assert extract._arrow_columns(["a,b\nc,d\n"], 2) is None
    assert extract._arrow_columns(["a,b,c\n"], 2) is None  # another field count


def test_a_bundle_loads_the_same_through_arrow_and_through_the_csv_module(
    engine: Engine, twin: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "b"
    write_bundle(bundle, patients=80, seed=17, dirty=True)
    fields, rows = read_csv(bundle / "treatments.csv")
    rows[3]["drug"] = "  Revlimid 10 mg "  # whitespace at the edges: trimmed on both paths
    rows[7]["drug"] = "Lénalidomide"
    rows[9]["start_date"] = ""  # required
    rows[11]["dose_mg"] = "NaN"  # not a number here
    rows[12]["intent"] = "MAINTENANCE"  # a code in another case
    rows[13]["stop_reason"] = "bored"  # not an allowed code
    rows[14]["drug"] = "x" * 250  # too long
    rows[15]["treatment_id"] = ""
    write_csv(bundle / "treatments.csv", fields, rows)

    arrow_chunks = calls_to(monkeypatch, extract, "_arrow_columns")
    a = run_bundle(engine, bundle, KEY, chunk_rows=37)
    assert len(arrow_chunks) > 10  # every file, several chunks each, went through Arrow

    monkeypatch.setattr(extract, "_arrow_columns", lambda lines, width: None)
    b = run_bundle(twin, bundle, KEY, chunk_rows=37)

    assert a.files == b.files
    assert a.files["treatments"].quarantined >= 6
    assert same_registry(engine, twin)
