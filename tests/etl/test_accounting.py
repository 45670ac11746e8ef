"""Property: for any mix of corruptions, every row read is either loaded or quarantined."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etl.pipeline import run_bundle
from etl.specs import SPECS
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle
from tests.etl.test_labs import LABS

NASTY = [
    "",
    " ",
    "x",
    "-1",
    "0",
    "2019-02-30",
    "2099-01-01",
    "1800-01-01",
    "yes",
    "PD",
    "MRN-0001",
    "MRN-0002",
    "R1",
    "E1",
    "TX1",
    "dead",
    "alive",
    "auto",
    "NULL",
    "'; --",
    "9" * 300,
    "ünïcødé",
    "progression",
    "2020-01-01",
    "<0.1",
    "g/L",
    "SPEP M-spike",
]

corruption = st.tuples(
    st.sampled_from(list(SPECS)),
    st.integers(min_value=0, max_value=10),
    st.integers(min_value=0, max_value=10),
    st.sampled_from(NASTY),
)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples in CI every time; change the seed locally to explore
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(corruption, max_size=12), st.booleans())
def test_read_equals_loaded_plus_quarantined(engine, corruptions, duplicate) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["labs"] = [dict(r) for r in LABS]  # the optional file too
    for file, row_i, col_i, value in corruptions:
        if not rows[file]:
            continue
        row = rows[file][row_i % len(rows[file])]
        cols = [c.name for c in SPECS[file].columns]
        row[cols[col_i % len(cols)]] = value
    if duplicate:
        rows["treatments"].append(dict(rows["treatments"][0]))
    folder = Path(tempfile.mkdtemp())
    try:
        s = run_bundle(engine, write_bundle(folder / "b", rows), TEST_KEY.encode(), dry_run=True)
    finally:
        shutil.rmtree(folder)
    for name, c in s.files.items():
        assert c.read == len(rows[name])
        assert c.read == c.loaded + c.quarantined
    assert len(s.quarantine) == sum(c.quarantined for c in s.files.values())
