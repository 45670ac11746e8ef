"""A bundle shaped like real medication exports (mobilisation with G-CSF and plerixafor,
drugs added or switched during induction, melphalan a week before the infusion,
bisphosphonates across all lines, brand names with doses and accents, a second line starting
on the day the progression is recorded), with bad rows added: on both databases it gives
exactly the published group sizes, and every patient's index transplant, relapse and
second-line start are the dates the generator wrote down; with the laboratory series, line 1's
best response is the one the generator designed and relapses name the series among their sources."""

from __future__ import annotations

import csv
import hashlib
import hmac
from collections import Counter
from pathlib import Path

import pandas as pd
from click.testing import CliRunner
from sqlalchemy import Engine, select, text

from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.cli import cli
from registry.cohorts.definition import load_definition
from registry.cohorts.sql import read_cohort
from registry.db.models import PatientSummary
from tests.conftest import TEST_KEY

KEY = TEST_KEY.encode()


def _iso(v: object) -> str:
    return "" if v is None or pd.isna(v) else str(v)[:10]


def test_realistic_bundle_derives_every_date_the_generator_wrote(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    truth = write_bundle(tmp_path / "b", patients=1000, seed=1, dirty=True)
    with (tmp_path / "b" / "synth-truth-patients.csv").open(encoding="utf-8") as fh:
        expected = list(csv.DictReader(fh))
    patterns = Counter(p for r in expected for p in r["patterns"].split(";") if p)
    for pattern in (
        "mobilisation",
        "drug_added_in_induction",
        "switch_in_induction",
        "melphalan_week_before",
        "bisphosphonate",
        "l2_on_progression_day",
        "maintenance_prescriptions",
    ):
        assert patterns[pattern] >= 50, pattern  # every pattern is exercised, many times
    # revision 3's patterns (study patients only; the blinded drug in groups G2 and G4)
    assert patterns["salvage_before_record"] >= 50 and patterns["relapse_recorded_twice"] >= 40
    assert patterns["blinded_trial_drug"] >= 5

    s = run_bundle(engine, tmp_path / "b", KEY)
    # only the injected rows are quarantined: nothing the contract allows is lost
    assert {k: v.quarantined for k, v in s.files.items()} == truth["quarantine"]
    # every real-world spelling maps; the blinded trial drug is unmapped and still derived
    assert set(s.unmapped_drugs) == {"investigational agent x", "study drug"}

    def key(pid: str) -> str:
        return hmac.new(KEY, f"SYNTH-01:patient:{pid}".encode(), hashlib.sha256).hexdigest()[:32]

    with engine.connect() as conn:
        summaries = {r.patient_key: r for r in conn.execute(select(PatientSummary))}
        best = dict(
            conn.execute(text("SELECT patient_key, best_response FROM v_lines WHERE line_number = 1")).all()
        )
        sources = Counter(r for (r,) in conn.execute(text("SELECT sources FROM v_relapses")))
    cohort = read_cohort(engine, load_definition("lenalidomide-relapse"))
    groups = {r.patient_key: r.group for r in cohort.itertuples() if isinstance(r.group, str)}
    assert Counter(groups.values()) == {"G1": 136, "G2": 161, "G3": 209, "G4": 69}

    wrong: Counter[str] = Counter()
    for row in expected:
        k = key(row["patient_id"])
        summary = summaries[k]
        wrong["index transplant"] += _iso(summary.index_transplant_date) != row["index_transplant"]
        if row["l1_best_response"]:  # the laboratory series confirms line 1's deepest response
            wrong["line 1 best response"] += best.get(k) != row["l1_best_response"]
        if row["group"]:
            wrong["relapse"] += _iso(summary.relapse_date) != row["relapse"]
            wrong["second line"] += _iso(summary.l2_start) != row["l2_start"]
            wrong["progression after the second line"] += (
                _iso(summary.l2_progression_date) != row["l2_progression"]
            )
            wrong["group"] += groups.get(k) != row["group"]
        else:
            wrong["outside the study"] += k in groups
    assert not +wrong, wrong
    # the laboratory series documents most relapses too (on the day they were recorded), and
    # every category of response is reached
    assert sum(n for src, n in sources.items() if "labs" in src.split(",")) >= 400, sources
    assert {r["l1_best_response"] for r in expected} >= {"sCR", "CR", "VGPR", "PR", "MR"}

    # a mobilised patient: one line 1 with induction, mobilisation, transplant and maintenance
    mobilised = next(r for r in expected if r["group"] == "G1" and "mobilisation" in r["patterns"].split(";"))
    res = CliRunner().invoke(cli, ["--database-url", db_url, "patient", "show", key(mobilised["patient_id"])])
    assert res.exit_code == 0, res.output
    line1 = res.output[res.output.index("LINE 1 starts") : res.output.index("LINE 2 starts")]
    for part in ("line 1 induction", "line 1 mobilisation", "derived role: index", "line 1 maintenance"):
        assert part in line1, (part, res.output)
