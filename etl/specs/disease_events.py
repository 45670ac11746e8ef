"""disease_events.csv: response assessments and documented progressions or relapses."""

from __future__ import annotations

import pandas as pd

from etl.specs.base import FileSpec, RowContext, RuleContext, iso, nullable
from registry.contract import input_file
from registry.contract.rules import RuleCode
from registry.db.models import DiseaseEvent


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
    model=DiseaseEvent,
    key="event_key",
    rules=rules,
    to_rows=to_rows,
)
