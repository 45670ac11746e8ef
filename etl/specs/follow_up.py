"""follow_up.csv: one row per patient — last contact and vital status."""

from __future__ import annotations

from typing import Any

import pandas as pd

from etl.specs.base import FileSpec, RowContext, RuleContext, iso, nullable
from registry.contract import input_file
from registry.contract.rules import RuleCode
from registry.db.models import FollowUp


def rules(c: RuleContext) -> None:
    """Death date present exactly when dead; no date before diagnosis; last contact not after death."""
    t = c.t
    dead = t["vital_status"] == "dead"
    c.check(dead & t["death_date"].isna(), "death_date", RuleCode.DEATH_DATE_REQUIRED)
    c.check(
        ~dead & t["death_date"].notna() & t["vital_status"].notna(),
        "death_date",
        RuleCode.DEATH_DATE_NOT_ALLOWED,
    )
    c.check(t["death_date"] < c.diagnosis, "death_date", RuleCode.BEFORE_DIAGNOSIS)
    c.check(t["last_contact_date"] < c.diagnosis, "last_contact_date", RuleCode.BEFORE_DIAGNOSIS)
    c.check(t["last_contact_date"] > t["death_date"], "last_contact_date", RuleCode.AFTER_DEATH)


def to_rows(valid: pd.DataFrame, ctx: RowContext) -> pd.DataFrame:
    """Valid rows -> ``follow_up`` rows."""
    out = pd.DataFrame(index=valid.index)
    out["patient_key"] = ctx.pseudo.series("patient", valid["patient_id"])
    out["last_contact_date"] = iso(valid["last_contact_date"])
    out["vital_status"] = valid["vital_status"]
    out["death_date"] = iso(valid["death_date"])
    out["cause_of_death"] = nullable(valid["cause_of_death"])
    return out


def on_valid(facts: Any, valid: pd.DataFrame, keys: pd.Series, patient_ids: Any) -> None:
    """Keep the valid rows' death and last contact until the file is complete."""
    f = valid[["death_date", "last_contact_date"]].copy()
    f["key"] = keys.to_numpy()
    f.index = pd.Index(keys.to_numpy())
    facts.pending.append(f)


def on_done(facts: Any, duplicated: set[str]) -> None:
    """Death and last contact join the patients' facts (a duplicated row counts as absent)."""
    if not facts.pending:
        return
    fu = pd.concat(facts.pending)
    facts.pending.clear()
    fu = fu[~fu["key"].isin(duplicated)]
    for col in ("death_date", "last_contact_date"):
        facts.frame[col] = fu[col].reindex(facts.frame.index)


SPEC = FileSpec.of(
    input_file("follow_up"),
    model=FollowUp,
    key="patient_key",
    rules=rules,
    to_rows=to_rows,
    on_valid=on_valid,
    on_done=on_done,
)
