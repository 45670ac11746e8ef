"""The analysts' views: the same names and columns on both engines, current records only, no
lineage and no full birth date, values that agree with the registry's own derivation, and a
description on every PostgreSQL column."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, text

from etl.pipeline import run_bundle
from registry.cohorts.sql import create_builtin_views
from registry.db.views import VIEWS
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle

KEY = TEST_KEY.encode()
HIDDEN = {"birth_date", "run_id", "source_row", "is_current", "retired_run_id", "needs_derivation"}


def _rows(engine: Engine, sql: str) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql)).mappings()]


def _date(v: object) -> dt.date:
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))


def test_views_have_their_documented_columns_and_nothing_internal(engine: Engine) -> None:
    with engine.connect() as conn:
        for view in VIEWS:
            columns = list(conn.execute(text(f"SELECT * FROM {view.name} WHERE 1 = 0")).keys())
            assert columns == [c for c, _ in view.columns], view.name
            assert not HIDDEN & set(columns), view.name


def test_view_values_follow_the_registry(engine: Engine, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "b"), KEY)
    patients = _rows(engine, "SELECT * FROM v_patients ORDER BY birth_year")
    assert [p["birth_year"] for p in patients] == [1950, 1955, 1960]
    first = patients[2]  # MRN-0001: born 1960-03-01, diagnosed 2019-01-10
    assert float(first["age_at_diagnosis"]) == 58.9 and first["vital_status"] == "alive"

    key = first["patient_key"]
    treatments = _rows(
        engine,
        f"SELECT drug, drug_raw, start_date, line_number FROM v_treatments WHERE patient_key = '{key}'",
    )
    by_start = {(t["drug_raw"], str(t["start_date"])[:10]): t["line_number"] for t in treatments}
    assert by_start[("REVLIMID", "2019-01-20")] == 1 and by_start[("lenalidomide", "2019-09-01")] == 1
    assert by_start[("Darzalex", "2022-03-15")] == 2

    regimens = _rows(
        engine,
        "SELECT line_number, regimen_number, phase, acronym, backbone "
        f"FROM v_regimens WHERE patient_key = '{key}'",
    )
    assert sorted(tuple(r.values()) for r in regimens) == [  # type: ignore[type-var]
        (1, 1, "induction", "VRd", "PI + IMiD + steroid"),
        (1, 2, "maintenance", "R", "IMiD"),
        (2, 1, "salvage", None, "anti-CD38 + IMiD"),  # daratumumab + lenalidomide, no steroid
    ]
    (mt,) = _rows(engine, f"SELECT * FROM v_maintenance WHERE patient_key = '{key}'")
    assert mt["agents"] == "lenalidomide" and mt["stop_reason"] == "progression"
    assert mt["duration_days"] == (_date(mt["end_date"]) - _date(mt["start_date"])).days + 1 == 913
    (line2,) = _rows(engine, f"SELECT * FROM v_lines WHERE patient_key = '{key}' AND line_number = 2")
    assert line2["start_rule"] == "progression" and line2["agents"] == "daratumumab, lenalidomide"
    relapse = _rows(
        engine, f"SELECT * FROM v_relapses WHERE patient_key = '{key}' AND first_after_index_transplant"
    )
    assert len(relapse) == 1 and relapse[0]["relapse_date"] in ("2022-03-01", dt.date(2022, 3, 1))
    # each drug before that relapse (2022-03-01), worked out from the base rows: VRd from
    # 2019-01-20 (bortezomib and lenalidomide to 2019-05-01, 102 days; dexamethasone to 04-20,
    # 91 days), lenalidomide maintenance 2019-09-01 to the relapse (913 days, 10 mg)
    drugs = _rows(
        engine,
        "SELECT drug, drug_class, refractory, exposure_days, free_interval_days, last_dose_mg "
        f"FROM v_relapse_drugs WHERE patient_key = '{key}' AND first_after_index_transplant ORDER BY drug",
    )
    assert [
        (d["drug"], bool(d["refractory"]), d["exposure_days"], d["free_interval_days"]) for d in drugs
    ] == [
        ("bortezomib", False, 102, 1035),
        ("dexamethasone", False, 91, 1046),
        ("lenalidomide", True, 102 + 913, 0),
    ]
    assert [d["last_dose_mg"] for d in drugs] == [None, None, 10]
    line_drugs = _rows(
        engine,
        "SELECT line_number, drug, first_regimen, maintenance "
        f"FROM v_line_drugs WHERE patient_key = '{key}' ORDER BY line_number, drug",
    )
    assert [
        (d["line_number"], d["drug"], bool(d["first_regimen"]), bool(d["maintenance"])) for d in line_drugs
    ] == [
        (1, "bortezomib", True, False),
        (1, "dexamethasone", True, False),
        (1, "lenalidomide", True, True),
        (2, "daratumumab", True, False),
        (2, "lenalidomide", True, False),
    ]
    assert _rows(engine, f"SELECT role FROM v_transplants WHERE patient_key = '{key}'") == [{"role": "index"}]

    # retired history is not in the views: the next full export no longer sends MRN-0003
    rows = base_rows()
    for name in ("patients", "follow_up", "treatments", "disease_events", "transplants"):
        rows[name] = [r for r in rows[name] if r["patient_id"] != "MRN-0003"]
    run_bundle(engine, write_bundle(tmp_path / "b2", rows, {"exported_at": "2026-07-02T02:00:00+00:00"}), KEY)
    assert len(_rows(engine, "SELECT patient_key FROM v_patients")) == 2
    assert len(_rows(engine, "SELECT patient_key FROM v_treatments")) == 7


def test_every_postgresql_view_column_is_described(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        assert create_builtin_views(conn)  # the cohorts' views too
    missing = _rows(
        engine,
        """SELECT c.relname AS view, a.attname AS column FROM pg_class c
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
           WHERE c.relkind = 'v' AND (c.relname LIKE 'v\\_%' OR c.relname LIKE 'cohort\\_%')
             AND col_description(c.oid, a.attnum) IS NULL""",
    )
    assert missing == []
    # a description holding a per cent sign is stored as written (the driver's placeholder sign)
    (stored,) = _rows(
        engine,
        """SELECT col_description(c.oid, a.attnum) AS d FROM pg_class c
           JOIN pg_attribute a ON a.attrelid = c.oid
           WHERE c.relname = 'v_response_assessments' AND a.attname = 'bm_plasma_cells'""",
    )
    assert stored["d"] == "the latest marrow plasma cells since the line's start, %"
