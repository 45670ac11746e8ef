"""Table 1: n (%) per level with "not recorded", median (IQR) with missing counts, a total column,
and standardised mean differences worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from registry.cohorts.definition import Table1Variable
from registry.reports.table1 import smd_categorical, smd_continuous, table_one


def test_smd_of_two_levels_is_the_textbook_formula() -> None:
    # 30% vs 50%: 0.2 / sqrt((0.3*0.7 + 0.5*0.5) / 2) = 0.2 / sqrt(0.23)
    got = smd_categorical(np.array([0.7, 0.3]), np.array([0.5, 0.5]))
    assert got == pytest.approx(0.2 / math.sqrt(0.23), abs=1e-12)


def test_smd_of_many_levels_does_not_depend_on_the_level_left_out() -> None:
    p, q = np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2])
    values = {smd_categorical(p[list(o)], q[list(o)]) for o in ((0, 1, 2), (1, 2, 0), (2, 0, 1))}
    assert max(values) - min(values) < 1e-12  # type: ignore[operator]
    assert smd_categorical(p, p) == 0.0


def test_smd_of_a_continuous_variable() -> None:
    # means 2 and 3, sample variances 1 and 1: (3 - 2) / sqrt((1 + 1) / 2) = 1
    assert smd_continuous(np.array([1.0, 2, 3]), np.array([2.0, 3, 4])) == pytest.approx(1.0)
    assert smd_continuous(np.array([1.0]), np.array([2.0, 3])) is None  # too few values


def test_counts_percentages_missing_and_total() -> None:
    frame = pd.DataFrame(
        {
            "group": ["A", "A", "A", "B", "B"],
            "stage": ["I", "II", None, "I", "I"],
            "age": [50.0, 60.0, None, 70.0, 80.0],
        }
    )
    t = table_one(
        frame, ["A", "B"], (Table1Variable("stage", "Stage"), Table1Variable("age", "Age", "continuous"))
    )
    assert t["columns"] == ["A", "B", "total"] and t["n"] == {"A": 3, "B": 2, "total": 5}
    stage = {r["level"]: r["cells"] for r in t["rows"] if r["variable"] == "stage"}
    assert list(stage) == ["I", "II", "not recorded"]  # "not recorded" last
    assert stage["I"]["A"] == {"n": 1, "pct": pytest.approx(100 / 3, abs=1e-4)}
    assert stage["I"]["total"]["n"] == 3 and stage["not recorded"]["A"]["n"] == 1
    age = next(r for r in t["rows"] if r["variable"] == "age")
    assert age["cells"]["A"] == {"median": 55.0, "q1": 52.5, "q3": 57.5, "values": 2, "missing": 1}
    assert age["cells"]["total"]["median"] == 65.0


def test_levels_name_missing_values_and_booleans_whatever_their_type() -> None:
    from registry.reports.table1 import NOT_RECORDED, _levels

    values = pd.Series([True, None, False, np.nan, "III", pd.NA, True, 2], dtype=object)
    assert _levels(values).tolist() == [
        "yes",
        NOT_RECORDED,
        "no",
        NOT_RECORDED,
        "III",
        NOT_RECORDED,
        "yes",
        "2",
    ]
    flags = pd.Series([True, None, False], dtype="boolean")
    assert _levels(flags).tolist() == ["yes", NOT_RECORDED, "no"]
    assert _levels(pd.Series([], dtype=object)).tolist() == []


def test_ordered_factors_keep_their_clinical_order_and_codes_read_as_words() -> None:
    import pandas as pd

    from registry.cohorts.definition import Table1Variable
    from registry.reports.table1 import table_one

    frame = pd.DataFrame(
        {
            "group": ["A"] * 8,
            "response": ["VGPR", "sCR", "PR", "CR", None, "PD", "SD", "MR"],
            "del17p": ["not_tested", "absent", "present", "absent", None, "absent", "absent", "absent"],
        }
    )
    variables = (
        Table1Variable("response", "Response", "categorical"),
        Table1Variable("del17p", "del(17p)", "categorical"),
    )
    rows = table_one(frame, ["A"], variables)["rows"]
    assert [r["level"] for r in rows if r["variable"] == "response"] == [
        "sCR", "CR", "VGPR", "PR", "MR", "SD", "PD", "not recorded",
    ]  # fmt: skip
    assert [r["level"] for r in rows if r["variable"] == "del17p"] == [
        "absent", "present", "not tested", "not recorded",
    ]  # fmt: skip
