"""treatments.csv: one row per drug per continuous period of exposure, drug names as
recorded (mapped through the vocabulary; unmapped names are counted, not guessed)."""

from __future__ import annotations

import pandas as pd

from etl.specs.base import FileSpec, RowContext, RuleContext, iso, nullable
from registry.contract import input_file
from registry.contract.rules import RuleCode
from registry.db.models import Treatment
from registry.db.vocabulary import normalise_drug_name


def rules(c: RuleContext) -> None:
    """End not before start; within follow-up (an ongoing treatment's empty end never counts)."""
    c.check(c.t["end_date"] < c.t["start_date"], "end_date", RuleCode.END_BEFORE_START)
    c.not_after_end_of_follow_up("start_date")
    c.not_after_end_of_follow_up("end_date")  # empty end (ongoing) never compares true


def to_rows(valid: pd.DataFrame, ctx: RowContext) -> pd.DataFrame:
    """Valid rows -> ``treatments`` rows, drug names mapped through the vocabulary."""
    out = pd.DataFrame(index=valid.index)
    out["treatment_key"] = ctx.pseudo.series("treatment", valid["treatment_id"])
    out["patient_key"] = ctx.pseudo.series("patient", valid["patient_id"])
    out["drug_raw"] = valid["drug"]
    # once per distinct recorded name: the normalised forms tried in order
    distinct = {v: ctx.vocab.lookup(v) for v in valid["drug"].unique()}
    ids = valid["drug"].map(distinct)
    for raw_name, n in valid["drug"][ids.isna()].value_counts().items():
        ctx.unmapped[normalise_drug_name(str(raw_name)) or str(raw_name)] += int(n)
    out["drug_id"] = pd.Series([None if pd.isna(v) else int(v) for v in ids], index=ids.index, dtype=object)
    out["start_date"] = iso(valid["start_date"])
    out["end_date"] = iso(valid["end_date"])
    for c in ("dose_mg", "intent", "stop_reason"):
        out[c] = nullable(valid[c])
    return out


SPEC = FileSpec.of(
    input_file("treatments"),
    model=Treatment,
    key="treatment_key",
    rules=rules,
    to_rows=to_rows,
)
