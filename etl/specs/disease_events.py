"""disease_events.csv: response assessments and documented progressions or relapses."""

from __future__ import annotations

import pandas as pd

from etl.contract import RESPONSES, Column, identity
from etl.rules import RuleCode
from etl.specs.base import FileSpec, RowContext, RuleContext, iso, nullable
from registry.contract import input_file
from registry.db.models import DiseaseEvent

COLUMNS = (
    Column("event_id", "id", True),
    Column("patient_id", "id", True, description="must exist in patients.csv"),
    Column("event_date", "date", True),
    Column("event_type", "code", True, identity("response_assessment", "progression", "relapse")),
    Column("response", "code", codes=RESPONSES, description="expected for response_assessment"),
)


def rules(c: RuleContext) -> None:
    """Events within follow-up; a response assessment should carry its response (advisory)."""
    c.not_after_end_of_follow_up("event_date")
    assessment = c.t["event_type"] == "response_assessment"
    c.check(assessment & c.t["response"].isna(), "response", RuleCode.RESPONSE_MISSING)


def to_rows(valid: pd.DataFrame, ctx: RowContext) -> pd.DataFrame:
    """Valid rows -> ``disease_events`` rows (keys pseudonymised)."""
    out = pd.DataFrame(index=valid.index)
    out["event_key"] = ctx.pseudo.series("event", valid["event_id"])
    out["patient_key"] = ctx.pseudo.series("patient", valid["patient_id"])
    out["event_date"] = iso(valid["event_date"])
    out["event_type"] = valid["event_type"]
    out["response"] = nullable(valid["response"])
    return out


SPEC = FileSpec.of(
    input_file("disease_events"),
    COLUMNS,
    model=DiseaseEvent,
    key="event_key",
    rules=rules,
    to_rows=to_rows,
)
