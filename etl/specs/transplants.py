"""transplants.csv: stem-cell transplants (day 0 = infusion)."""

from __future__ import annotations

import pandas as pd

from etl.specs.base import FileSpec, RowContext, RuleContext, iso, nullable, yes_no
from registry.contract import input_file
from registry.contract.rules import RuleCode
from registry.db.models import Transplant

BEFORE_DIAGNOSIS_TOLERANCE = pd.Timedelta(days=30)


def rules(c: RuleContext) -> None:
    """Not more than 30 days before diagnosis; within follow-up."""
    c.check(
        c.t["transplant_date"] < c.diagnosis - BEFORE_DIAGNOSIS_TOLERANCE,
        "transplant_date",
        RuleCode.TRANSPLANT_BEFORE_DIAGNOSIS,
    )
    c.not_after_end_of_follow_up("transplant_date")


def to_rows(valid: pd.DataFrame, ctx: RowContext) -> pd.DataFrame:
    """Valid rows -> ``transplants`` rows."""
    out = pd.DataFrame(index=valid.index)
    out["transplant_key"] = ctx.pseudo.series("transplant", valid["transplant_id"])
    out["patient_key"] = ctx.pseudo.series("patient", valid["patient_id"])
    out["transplant_date"] = iso(valid["transplant_date"])
    out["transplant_type"] = valid["transplant_type"]
    for c in ("conditioning_agent", "conditioning_dose_mg_m2", "response_before", "response_day100"):
        out[c] = nullable(valid[c])
    out["planned_tandem"] = yes_no(valid["planned_tandem"])
    return out


SPEC = FileSpec.of(
    input_file("transplants"),
    model=Transplant,
    key="transplant_key",
    rules=rules,
    to_rows=to_rows,
)
