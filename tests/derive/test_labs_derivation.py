"""Response and progression derived from laboratory series, through the whole pipeline on both
engines and read through the analysts' views: hand-built patients (one a rule, each response
threshold on both sides) whose line 1 best response, relapse date and sources, and line 2 start
were worked out from the rules.

Every patient has the same treatment: VRd induction from 2020-01-11 (line 1 starts then; the
baseline is the diagnosis sample of 2020-01-01), melphalan and a transplant on 2020-06-01,
lenalidomide maintenance from 2020-09-01, and (for some) a daratumumab + pomalidomide salvage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from etl.pipeline import run_bundle
from registry.core.labs import code_of
from registry.derive.core import derive_patient
from registry.derive.model import PatientInputs, TransplantRow, TreatmentRow
from registry.derive.params import DerivationParameters
from registry.derive.response import Sample
from tests.conftest import TEST_KEY
from tests.etl.bundles import write_bundle

KEY = TEST_KEY.encode()
DIAGNOSIS = "2020-01-01"
# sample dates of the worked example's series (line 1 starts 2020-01-11)
SERIES_DATES = (
    "2020-01-01",  # diagnosis: the baseline
    "2020-03-01",
    "2020-04-01",  # induction
    "2020-09-15",
    "2020-12-15",  # after the transplant
    "2021-03-15",
    "2021-06-15",
    "2021-07-15",
    "2021-10-15",
)


def serum(*values: str, unit: str = "g/dL", test: str = "SPEP M-spike") -> list[tuple[str, str, str, str]]:
    return [(d, test, v, unit) for d, v in zip(SERIES_DATES, values, strict=False)]


def on(day: str, test: str, value: str, unit: str = "") -> list[tuple[str, str, str, str]]:
    return [(day, test, value, unit)]


def cr_evidence(
    *days: str, marrow: str | None = "2", ratio_normal: bool = False
) -> list[tuple[str, str, str, str]]:
    """Negative serum and urine immunofixation on each day, a marrow on the first, and free
    light chains (normal ratio or not)."""
    out = []
    for d in days:
        out += [(d, "IFE serum", "negative", ""), (d, "urine_ife", "Negative", "")]
        out += [(d, "kappa FLC", "15" if ratio_normal else "40", "mg/L"), (d, "lambda FLC", "12", "mg/L")]
    if marrow is not None:
        out.append((days[0], "bm_plasma_cells", marrow, "%"))
    return out


# name -> (labs, salvage start or None, extra disease events,
#          expected (line 1 best response, relapse date, relapse sources, line 2 start, line 2 rule))
CASES: dict[
    str, tuple[list[tuple[str, str, str, str]], str | None, list[tuple[str, str]], tuple[Any, ...]]
] = {
    # 3.0 -> 1.4 (-53%) -> 1.3: PR, no progression
    "pr": (serum("3.0", "1.4", "1.3", "1.3"), None, [], ("PR", None, None, None, None)),
    # -92%, -93%: VGPR (only the serum is measurable: urine is not judged)
    "vgpr": (serum("3.0", "1.4", "0.25", "0.2", "0.2"), None, [], ("VGPR", None, None, None, None)),
    # below the limit (0), immunofixation negative twice, marrow 2%, ratio abnormal: CR
    "cr": (
        serum("3.0", "1.4", "<0.1", "not detected", "<0.1")
        + cr_evidence("2020-04-01", "2020-09-15", "2020-12-15"),
        None,
        [],
        ("CR", None, None, None, None),
    ),
    # the same with a normal FLC ratio: sCR
    "scr": (
        serum("3.0", "1.4", "<0.1", "not detected", "<0.1")
        + cr_evidence("2020-04-01", "2020-09-15", "2020-12-15", ratio_normal=True),
        None,
        [],
        ("sCR", None, None, None, None),
    ),
    # the CR evidence without a marrow: at most VGPR
    "no_marrow": (
        serum("3.0", "1.4", "<0.1", "not detected", "<0.1")
        + cr_evidence("2020-04-01", "2020-09-15", "2020-12-15", marrow=None),
        None,
        [],
        ("VGPR", None, None, None, None),
    ),
    # each response threshold on both sides (2.0 g/dL at baseline, the value held twice)
    "minus_50": (serum("2.0", "1.0", "1.0"), None, [], ("PR", None, None, None, None)),
    "minus_49": (serum("2.0", "1.02", "1.02"), None, [], ("MR", None, None, None, None)),
    "minus_90": (serum("2.0", "0.2", "0.2"), None, [], ("VGPR", None, None, None, None)),
    "minus_89": (serum("2.0", "0.22", "0.22"), None, [], ("PR", None, None, None, None)),
    "minus_25": (serum("2.0", "1.5", "1.5"), None, [], ("MR", None, None, None, None)),
    "minus_24": (serum("2.0", "1.52", "1.52"), None, [], ("SD", None, None, None, None)),
    # light-chain-only disease: dFLC 240 held twice, then +100 mg/L twice (not PD: more than 100
    # is needed) ...
    "dflc_plus_100": (
        [
            (d, t, v, "mg/L")
            for d, k in zip(SERIES_DATES, ("850", "300", "250", "250", "350", "350"), strict=False)
            for t, v in (("kappa FLC", k), ("lambda FLC", "10"))
        ],
        None,
        [],
        ("PR", None, None, None, None),
    ),
    # ... or +101 then +102: PD, confirmed by the next sample
    "dflc_plus_101": (
        [
            (d, t, v, "mg/L")
            for d, k in zip(SERIES_DATES, ("850", "300", "250", "250", "351", "352"), strict=False)
            for t, v in (("kappa FLC", k), ("lambda FLC", "10"))
        ],
        None,
        [],
        ("PR", "2020-12-15", "labs", None, None),
    ),
    # the worked example: PR; nadir 0.4 held twice; 0.9 (+0.5) is PD confirmed by 1.0
    "worked": (
        serum("3.2", "1.4", "1.3", "0.4", "0.4", "0.6", "0.9", "1.0"),
        "2021-08-01",
        [],
        ("PR", "2021-06-15", "labs", "2021-08-01", "progression"),
    ),
    # the same series in g/L: the same answers
    "g_per_l": (
        serum("32", "14", "13", "4", "4", "6", "9", "10", unit="g/L"),
        "2021-08-01",
        [],
        ("PR", "2021-06-15", "labs", "2021-08-01", "progression"),
    ),
    # 0.9 is PD but 0.5 does not confirm it and no new drug follows: no progression
    "unconfirmed_pd": (
        serum("3.2", "1.4", "1.3", "0.4", "0.4", "0.6", "0.9", "0.5"),
        None,
        [],
        ("PR", None, None, None, None),
    ),
    # 0.8 over the nadir 0.4 is +100% but +0.4 g/dL (0.5 needed): no PD
    "absolute": (
        serum("3.2", "1.4", "1.3", "0.4", "0.4", "0.6", "0.8", "0.8"),
        None,
        [],
        ("PR", None, None, None, None),
    ),
    # an isolated 0.2 is no nadir: the nadir is 1.2, so 1.6 (+0.4) is no PD (against 0.2 it would be)
    "isolated_low": (
        serum("3.0", "1.4", "0.2", "1.2", "1.2", "1.5", "1.6", "1.6"),
        None,
        [],
        ("PR", None, None, None, None),
    ),
    # light-chain-only disease: dFLC 840 -> 290 (-65%): PR (at most); 400 over the nadir 240
    # (+160 mg/L, +67%) is PD, confirmed by 420
    "light_chain": (
        [
            (d, t, v, "mg/L")
            for d, k in zip(SERIES_DATES, ("850", "300", "250", "250", "300", "400", "420"), strict=False)
            for t, v in (("kappa FLC", k), ("lambda FLC", "10"))
        ]
        + on(DIAGNOSIS, "serum_m_protein", "not detected", "g/dL"),
        "2021-08-01",
        [],
        ("PR", "2021-03-15", "labs", "2021-08-01", "progression"),
    ),
    # urine-only disease (serum 0.3 is not measurable): 800 -> 150 mg/24h is PR (< 200);
    # 400 over the nadir 150 (+250) is PD, confirmed by 450
    "urine_only": (
        on(DIAGNOSIS, "serum_m_protein", "0.3", "g/dL")
        + [
            (d, "UPEP 24h", v, "mg/24h")
            for d, v in zip(SERIES_DATES, ("800", "150", "150", "150", "150", "400", "450"), strict=False)
        ],
        "2021-08-01",
        [],
        ("PR", "2021-03-15", "labs", "2021-08-01", "progression"),
    ),
    # the worked example and a progression event 16 days after the first PD sample: one episode
    # dated by the laboratory
    "labs_and_event": (
        serum("3.2", "1.4", "1.3", "0.4", "0.4", "0.6", "0.9", "1.0"),
        "2021-08-01",
        [("2021-07-01", "progression")],
        ("PR", "2021-06-15", "event,labs", "2021-08-01", "progression"),
    ),
    # no laboratory series: the recorded event alone; the recorded response assessment judges line 1
    "no_labs": (
        [],
        "2021-08-01",
        [("2021-07-01", "progression"), ("2020-12-01", "response_assessment")],
        ("VGPR", "2021-07-01", "event", "2021-08-01", "progression"),
    ),
    # one PD sample (0.9), no second one before the salvage starts 60 days later with new drugs:
    # confirmed by the new therapy
    "new_therapy_day_60": (
        serum("3.2", "1.4", "1.3", "0.4", "0.4", "0.6", "0.9"),
        "2021-08-14",
        [],
        ("PR", "2021-06-15", "labs", "2021-08-14", "progression"),
    ),
    # within a year of the transplant a new regimen is line 1's own (no progression recorded):
    # its new drugs, started 36 days after the PD, still confirm it, and then start line 2
    "new_drugs_in_line_1_window": (
        serum("3.2", "1.4", "1.3")
        + on("2020-09-15", "serum_m_protein", "0.4", "g/dL")
        + on("2020-10-15", "serum_m_protein", "0.4", "g/dL")
        + on("2020-12-15", "serum_m_protein", "0.9", "g/dL"),
        "2021-01-20",
        [],
        ("PR", "2020-12-15", "labs", "2021-01-20", "progression"),
    ),
    # ... 61 days later: unconfirmed, no progression; the new drugs still start line 2
    "new_therapy_day_61": (
        serum("3.2", "1.4", "1.3", "0.4", "0.4", "0.6", "0.9"),
        "2021-08-15",
        [],
        ("PR", None, None, "2021-08-15", "new_drug"),
    ),
}


def _rows(cases: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {
        k: [] for k in ("patients", "transplants", "treatments", "disease_events", "follow_up", "labs")
    }
    for pid, (labs, salvage, events, _) in cases.items():
        rows["patients"].append(
            {"patient_id": pid, "sex": "F", "birth_date": "1958-01-01", "diagnosis_date": DIAGNOSIS}
        )
        rows["transplants"].append(
            {
                "transplant_id": f"{pid}-T",
                "patient_id": pid,
                "transplant_date": "2020-06-01",
                "transplant_type": "auto",
            }
        )
        rx = [
            ("bortezomib", "2020-01-11", "2020-05-01"),
            ("lenalidomide", "2020-01-11", "2020-05-01"),
            ("dexamethasone", "2020-01-11", "2020-05-01"),
            ("melphalan", "2020-05-30", "2020-05-30"),
            ("lenalidomide", "2020-09-01", salvage and _day_before(salvage)),
        ]
        if salvage:
            rx += [("daratumumab", salvage, None), ("pomalidomide", salvage, None)]
        for i, (drug, start, end) in enumerate(rx):
            rows["treatments"].append(
                {
                    "treatment_id": f"{pid}-R{i}",
                    "patient_id": pid,
                    "drug": drug,
                    "start_date": start,
                    "end_date": end or "",
                    "stop_reason": "other" if end else "ongoing",
                    "intent": "maintenance" if start == "2020-09-01" else "",
                }
            )
        for i, (day, kind) in enumerate(events):
            rows["disease_events"].append(
                {
                    "event_id": f"{pid}-E{i}",
                    "patient_id": pid,
                    "event_date": day,
                    "event_type": kind,
                    "response": "VGPR" if kind == "response_assessment" else "",
                }
            )
        for i, (day, test, value, unit) in enumerate(labs):
            rows["labs"].append(
                {
                    "lab_id": f"{pid}-L{i}",
                    "patient_id": pid,
                    "sample_date": day,
                    "test": test,
                    "value": value,
                    "unit": unit,
                }
            )
        rows["follow_up"].append(
            {"patient_id": pid, "last_contact_date": "2023-06-30", "vital_status": "alive"}
        )
    return rows


def _day_before(day: str) -> str:
    return (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()


def _key(pid: str) -> str:
    return hmac.new(KEY, f"TEST-SITE:patient:{pid}".encode(), hashlib.sha256).hexdigest()[:32]


def _one(conn: Connection, sql: str, key: str) -> Any:
    return conn.execute(text(sql), {"k": key}).first()


@pytest.fixture
def loaded(engine: Engine, tmp_path: Path) -> dict[str, tuple[Any, ...]]:
    """Every case loaded and derived; per case, read through the views: line 1's best response,
    the first relapse's date and sources, line 2's start and start rule."""
    summary = run_bundle(engine, write_bundle(tmp_path / "b", _rows(CASES)), KEY)
    assert summary.files["labs"].quarantined == 0
    out: dict[str, tuple[Any, ...]] = {}
    with engine.connect() as conn:
        for pid in CASES:
            k = _key(pid)
            line1 = _one(
                conn, "SELECT best_response FROM v_lines WHERE patient_key = :k AND line_number = 1", k
            )
            rel = _one(
                conn,
                "SELECT relapse_date, sources FROM v_relapses WHERE patient_key = :k ORDER BY relapse_number",
                k,
            )
            line2 = _one(
                conn,
                "SELECT start_date, start_rule FROM v_lines WHERE patient_key = :k AND line_number = 2",
                k,
            )
            out[pid] = (
                line1[0] if line1 else None,
                str(rel[0]) if rel else None,
                rel[1] if rel else None,
                str(line2[0]) if line2 else None,
                line2[1] if line2 else None,
            )
    return out


def test_every_case_through_the_views(loaded: dict[str, tuple[Any, ...]]) -> None:
    wrong = {pid: (loaded[pid], CASES[pid][3]) for pid in CASES if loaded[pid] != CASES[pid][3]}
    assert not wrong, wrong


def test_the_worked_example_is_explained_assessment_by_assessment(engine: Engine, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "b", _rows({"worked": CASES["worked"]})), KEY)
    with engine.connect() as conn:
        got = conn.execute(
            text(
                "SELECT assessment_date, category, confirmed, basis, serum_m_protein "
                "FROM v_response_assessments WHERE patient_key = :k ORDER BY assessment_date"
            ),
            {"k": _key("worked")},
        ).all()
        line = _one(
            conn,
            "SELECT best_response_date, response_basis, measurable FROM v_lines WHERE patient_key = :k "
            "AND line_number = 1",
            _key("worked"),
        )
    assert [(str(d), c, bool(f)) for d, c, f, _, _ in got] == [
        ("2020-03-01", "PR", True),
        ("2020-04-01", "PR", True),
        ("2020-09-15", "PR", True),
        ("2020-12-15", "PR", True),
        ("2021-03-15", "PR", False),  # 0.6 is -81%: still PR; the next one is PD
        ("2021-06-15", "PD", True),  # the line's confirmed progression
        ("2021-07-15", "PD", False),  # the sample that confirmed it; nothing is judged after
    ]
    assert got[5][3].startswith("PD: serum 0.9 against a nadir of 0.4")
    assert [round(v, 6) for *_, v in got] == [1.4, 1.3, 0.4, 0.4, 0.6, 0.9, 1.0]
    assert (str(line[0]), line[1], line[2]) == ("2020-03-01", "labs", "serum")


def test_recorded_progressions_only(engine: Engine) -> None:
    """With ``progression_sources`` naming the recorded sources only, the laboratory PD dates
    no relapse and starts no line (the derivation, without the database)."""
    inp = _inputs("worked")
    assert [r.date for r in derive_patient(inp).relapses] == [dt.date(2021, 6, 15)]
    recorded = DerivationParameters(progression_sources=("event", "stop_reason"))
    dv = derive_patient(inp, recorded)
    assert dv.relapses == []
    assert dv.responses[0].best == "PR" and dv.responses[0].labs is not None
    assert dv.responses[0].labs.progression == dt.date(2021, 6, 15)  # still judged, not a relapse
    assert dv.lines[1].start_rule == "new_drug"


def _inputs(pid: str) -> PatientInputs:
    """A case as the rules read it (canonical units: the cases above are in g/dL)."""
    labs = CASES[pid][0]
    rows = _rows({pid: CASES[pid]})
    d = dt.date.fromisoformat
    rx = tuple(
        TreatmentRow(
            r["treatment_id"],
            r["drug"],
            "steroid" if r["drug"] == "dexamethasone" else "x",
            d(r["start_date"]),
            d(r["end_date"]) if r["end_date"] else None,
            r["stop_reason"],
            r["intent"] or None,
        )
        for r in rows["treatments"]
    )
    samples = tuple(
        Sample(d(day), code_of(test) or test, float(v), None, f"L{i}")
        for i, (day, test, v, _) in enumerate(labs)
    )
    return PatientInputs(pid, rx, (TransplantRow("T", d("2020-06-01")),), (), labs=samples)


def test_patient_show_draws_the_series(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """The patient page draws the series with the line starts, the nadir and the progression the
    series documented; the text timeline names the laboratory progression and the relapse's
    sources."""
    from click.testing import CliRunner

    from registry.cli import cli
    from registry.reports.patient import patient_series

    run_bundle(engine, write_bundle(tmp_path / "b", _rows({"worked": CASES["worked"]})), KEY)
    key = _key("worked")
    series = patient_series(engine, key[:12])
    assert [ln["number"] for ln in series["lines"]] == [1, 2]
    assert series["lines"][0]["parameter"] == "serum"
    day, level = series["lines"][0]["nadir"]  # 0.4 held twice, first on 2020-09-15
    assert (day, round(level, 6)) == (dt.date(2020, 9, 15), 0.4)
    assert series["relapses"] == [{"date": dt.date(2021, 6, 15), "sources": "labs"}]
    res = CliRunner().invoke(cli, ["--database-url", db_url, "patient", "show", key, "--format", "html"])
    assert res.exit_code == 0, res.output
    assert res.output.count("<svg") == 1 and "INTERNAL" in res.output and "Laboratory series" in res.output
    text = CliRunner().invoke(cli, ["--database-url", db_url, "patient", "show", key])
    assert "line 1 progression in the laboratory series: PD: serum 0.9 against a nadir of 0.4" in text.output
    assert "relapse #1 (from labs)" in text.output and "best response PR (labs)" in text.output


def test_the_response_date_is_the_first_confirmed_partial_response_or_better() -> None:
    """VGPR then PR: a confirmed PR dated by the VGPR (the origin of the duration of response),
    although the VGPR itself is not confirmed."""
    from registry.derive.response import Assessment, LineResponse
    from registry.derive.responses import _from_labs

    judged = LineResponse(1, ("serum",), {"serum": 3.0})
    judged.assessments = [
        Assessment(dt.date(2020, 3, 1), "MR", "MR: serum -30%"),
        Assessment(dt.date(2020, 4, 1), "VGPR", "VGPR: serum -92%"),
        Assessment(dt.date(2020, 5, 1), "PR", "PR: serum -60%"),
    ]
    judged.best, judged.best_date = "PR", dt.date(2020, 4, 1)
    assert _from_labs(1, judged).response_date == dt.date(2020, 4, 1)
    judged.assessments[2] = Assessment(dt.date(2020, 5, 1), "MR", "MR: serum -40%")  # not confirmed
    assert _from_labs(1, judged).response_date is None
