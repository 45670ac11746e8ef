"""patients.csv: one row per patient; every other file's rows belong to one of these."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from etl.specs.base import FileSpec, RowContext, RuleContext, iso, nullable, yes_no
from registry.contract import input_file
from registry.contract.files import FISH_COLUMNS
from registry.contract.rules import RuleCode
from registry.core.staging import stages
from registry.db.models import Patient

DAYS_PER_YEAR = 365.25


def rules(c: RuleContext) -> None:
    """Birth before diagnosis; an age at diagnosis of 18 to 110 years."""
    t = c.t
    c.check(t["birth_date"] >= t["diagnosis_date"], "diagnosis_date", RuleCode.BIRTH_NOT_BEFORE_DIAGNOSIS)
    age = (t["diagnosis_date"] - t["birth_date"]).dt.days / DAYS_PER_YEAR
    c.check((age < 18) | (age > 110), "birth_date", RuleCode.AGE_AT_DIAGNOSIS)


def cytogenetic_risk(df: pd.DataFrame) -> pd.Series:
    """high if any of del17p, t(4;14), t(14;16) present; standard if all three tested and
    absent; otherwise unknown ("not tested" is never "absent")."""
    trio = df[["del17p", "t_4_14", "t_14_16"]]
    high = (trio == "present").any(axis=1)
    standard = (trio == "absent").all(axis=1)
    return pd.Series(np.where(high, "high", np.where(standard, "standard", "unknown")), index=df.index)


def to_rows(valid: pd.DataFrame, ctx: RowContext) -> pd.DataFrame:
    """Valid rows -> ``patients`` rows, with the cytogenetic risk and the R-ISS and R2-ISS
    computed from their components (beside the recorded R-ISS)."""
    out = pd.DataFrame(index=valid.index)
    out["patient_key"] = ctx.pseudo.series("patient", valid["patient_id"])
    out["site_code"] = ctx.site_id
    out["sex"] = valid["sex"]
    out["birth_date"] = iso(valid["birth_date"])
    out["diagnosis_date"] = iso(valid["diagnosis_date"])
    for c in ("iss_stage", "riss_stage"):
        out[c] = nullable(valid[c])
    out["ldh_elevated"] = yes_no(valid["ldh_elevated"])
    for c in (*FISH_COLUMNS, "heavy_chain", "light_chain"):
        out[c] = nullable(valid[c])
    out["cytogenetic_risk"] = cytogenetic_risk(valid)
    out["riss_computed"], out["r2iss_computed"] = stages(out)
    return out


def on_valid(facts: Any, valid: pd.DataFrame, keys: pd.Series, patient_ids: Any) -> None:
    """The valid patients' birth and diagnosis dates, by patient pseudonym."""
    f = valid[["birth_date", "diagnosis_date"]].copy()
    f["key"] = keys.to_numpy()
    f.index = pd.Index(keys.to_numpy())
    facts.frame = pd.concat([facts.frame, f]) if len(facts.frame) else f


def on_done(facts: Any, duplicated: set[str]) -> None:
    """Drop duplicated patients from the facts and give them their date types."""
    if duplicated:
        facts.frame = facts.frame[~facts.frame["key"].isin(duplicated)]
    facts.frame = facts.frame.astype({c: "datetime64[ns]" for c in ("birth_date", "diagnosis_date")})
    facts.frame["death_date"] = pd.Series(dtype="datetime64[ns]")
    facts.frame["last_contact_date"] = pd.Series(dtype="datetime64[ns]")


SPEC = FileSpec.of(
    input_file("patients"),
    model=Patient,
    key="patient_key",
    rules=rules,
    to_rows=to_rows,
    on_valid=on_valid,
    on_done=on_done,
)
