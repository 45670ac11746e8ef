"""transplants.csv: stem-cell transplants (day 0 = infusion)."""

from __future__ import annotations

import pandas as pd

from etl.contract import RESPONSES, YES_NO, Column
from etl.rules import RuleCode
from etl.specs.base import FileSpec, RowContext, RuleContext, iso, nullable, yes_no
from registry.contract import input_file
from registry.db.models import Transplant

COLUMNS = (
    Column("transplant_id", "id", True),
    Column("patient_id", "id", True, description="must exist in patients.csv"),
    Column("transplant_date", "date", True, description="stem-cell infusion (day 0)"),
    Column(
        "transplant_type",
        "code",
        True,
        {"autologous": "autologous", "auto": "autologous", "allogeneic": "allogeneic", "allo": "allogeneic"},
    ),
    Column("conditioning_agent", "text", max_length=80, description="e.g. melphalan"),
    Column("conditioning_dose_mg_m2", "number", description="> 0", positive=True),
    Column("planned_tandem", "code", codes=YES_NO),
    Column("response_before", "code", codes=RESPONSES),
    Column("response_day100", "code", codes=RESPONSES),
)
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
    COLUMNS,
    model=Transplant,
    key="transplant_key",
    rules=rules,
    to_rows=to_rows,
)
