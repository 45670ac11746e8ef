"""labs.csv (optional): the laboratory series — M-protein, free light chains, immunofixation,
marrow and the staging chemistry — one row per test and sample date. The tests, their
synonyms, units and plausible ranges are one table in ``registry.core.labs``."""

from __future__ import annotations

import pandas as pd

from etl.specs.base import FileSpec, RowContext, RuleContext, iso, nullable
from registry.contract import input_file
from registry.contract.rules import RuleCode
from registry.core.labs import BY_CODE, LabValue, read_value
from registry.db.models import LabResult


def _read(t: pd.DataFrame) -> pd.Series:
    """Each row's value read (``LabValue``; None where the test or the value is missing)."""
    read = [
        read_value(test, value, unit)
        if isinstance(test, str) and test in BY_CODE and isinstance(value, str)
        else None
        for test, value, unit in zip(t["test"], t["value"], t["unit"].fillna(""), strict=True)
    ]
    return pd.Series(read, index=t.index, dtype=object)


def problem_code(v: LabValue | None) -> RuleCode | None:
    if v is None or v.problem is None:
        return None
    if "unknown" in v.problem:
        return RuleCode.LAB_UNIT
    if "implausible" in v.problem:
        return RuleCode.LAB_IMPLAUSIBLE
    return RuleCode.LAB_VALUE


def rules(c: RuleContext) -> None:
    """A value its test can read, in a unit known for it, plausible; no sample after the
    patient's death or last contact."""
    codes = _read(c.t).map(problem_code)
    c.check(codes == RuleCode.LAB_VALUE, "value", RuleCode.LAB_VALUE)
    c.check(codes == RuleCode.LAB_UNIT, "unit", RuleCode.LAB_UNIT)
    c.check(codes == RuleCode.LAB_IMPLAUSIBLE, "value", RuleCode.LAB_IMPLAUSIBLE)
    c.not_after_end_of_follow_up("sample_date")


def to_rows(valid: pd.DataFrame, ctx: RowContext) -> pd.DataFrame:
    """Valid rows -> ``labs`` rows: the delivered text and unit kept, the value in the test's
    canonical unit (or the immunofixation result)."""
    read = _read(valid)
    out = pd.DataFrame(index=valid.index)
    out["lab_key"] = ctx.pseudo.series("lab", valid["lab_id"])
    out["patient_key"] = ctx.pseudo.series("patient", valid["patient_id"])
    out["sample_date"] = iso(valid["sample_date"])
    out["test"] = valid["test"]
    out["value_text"] = valid["value"].str.strip()
    out["unit"] = nullable(valid["unit"])
    out["value"] = [v.value if v is not None else None for v in read]
    out["result"] = [v.result if v is not None else None for v in read]
    return out


SPEC = FileSpec.of(
    input_file("labs"),
    model=LabResult,
    key="lab_key",
    rules=rules,
    to_rows=to_rows,
)
