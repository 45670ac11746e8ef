"""labs.csv, the optional laboratory file, through the same machinery as every other file:
synonyms and units read into each test's canonical unit (the delivered text kept), bad rows
quarantined with their rule, pseudonyms in the ``lab`` namespace; a bundle without the file
loads and reports exactly as before, and a later full export without it retires no
laboratory row. Both engines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from etl.pipeline import run_bundle
from registry.db.models import LabResult
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle

KEY = TEST_KEY.encode()


def lab(
    i: int, test: str, value: str, unit: str = "", patient: str = "MRN-0001", day: str = "2019-01-15"
) -> dict[str, Any]:
    return {
        "lab_id": f"L{i}",
        "patient_id": patient,
        "sample_date": day,
        "test": test,
        "value": value,
        "unit": unit,
    }


LABS = [
    lab(1, "SPEP M-spike", "32", "g/L"),  # 3.2 g/dL
    lab(2, "serum_m_protein", "<0.1", "g/dL", day="2020-01-15"),  # below the limit: 0
    lab(3, "UPEP 24h", "0.45", "g/24h"),  # 450 mg/24h
    lab(4, "kappa FLC", "12", "mg/dL"),  # 120 mg/L
    lab(5, "IFE serum", "Positive"),
    lab(6, "serum_m_protein", "3", "mmol/L"),  # unit unknown for the test: quarantined
    lab(7, "Hb", "118", "g/L", patient="MRN-0003", day="2020-03-01"),  # 11.8 g/dL
]


def test_labs_load_in_canonical_units_and_bad_rows_are_quarantined(engine: Engine, tmp_path: Path) -> None:
    rows = base_rows()
    rows["labs"] = LABS
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY)
    c = s.files["labs"]
    assert (c.read, c.loaded, c.quarantined) == (7, 6, 1)
    with engine.connect() as conn:
        from registry.db.models import QuarantinedRow

        (reasons,) = conn.execute(select(QuarantinedRow.reasons).where(QuarantinedRow.file == "labs")).one()
    assert [r["rule"] for r in reasons] == ["lab_unit"]
    with engine.connect() as conn:
        got = {
            (r.test, r.value_text, r.unit): (None if r.value is None else round(r.value, 9), r.result)
            for r in conn.execute(select(LabResult).where(LabResult.is_current))
        }
        keys = list(conn.execute(select(LabResult.lab_key)).scalars())
    assert got == {
        ("serum_m_protein", "32", "g/L"): (3.2, None),
        ("serum_m_protein", "<0.1", "g/dL"): (0.0, None),
        ("urine_m_protein", "0.45", "g/24h"): (450.0, None),
        ("flc_kappa", "12", "mg/dL"): (120.0, None),
        ("serum_ife", "Positive", None): (None, "positive"),
        ("hemoglobin", "118", "g/L"): (11.8, None),
    }
    assert all(len(k) == 32 and not k.startswith("L") for k in keys)  # pseudonyms, never L1


def test_a_bundle_without_labs_loads_as_before_and_retires_none(engine: Engine, tmp_path: Path) -> None:
    plain = run_bundle(engine, write_bundle(tmp_path / "a"), KEY, dry_run=True)
    assert "labs" not in plain.files  # no line for a file the bundle does not have
    rows = base_rows()
    rows["labs"] = LABS[:5]
    first = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY)
    assert first.files["labs"].loaded == 5
    second = run_bundle(
        engine, write_bundle(tmp_path / "c", base_rows(), {"exported_at": "2026-07-02T00:00:00Z"}), KEY
    )
    assert second.status == "succeeded" and "labs" not in second.files
    with engine.connect() as conn:
        current = conn.execute(select(LabResult.lab_key).where(LabResult.is_current)).all()
    assert len(current) == 5  # a full export without the optional file retires none of it
