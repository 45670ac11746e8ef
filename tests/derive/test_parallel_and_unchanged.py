"""Derivation in worker processes stores exactly what one process stores, and a re-derivation
whose result did not change leaves the stored rows (ids, derivation run) as they were."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select, text, update

from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.db.models import DERIVED_TABLES, Patient
from registry.derive import run as derive_run
from registry.derive.run import derive_pending
from tests.conftest import TEST_KEY

KEY = TEST_KEY.encode()


def derived_state(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as conn:
        return {t: sorted(map(repr, conn.execute(text(f"SELECT * FROM {t}")).all())) for t in DERIVED_TABLES}


def test_workers_store_exactly_what_one_process_stores(
    engine: Engine, twin: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(derive_run, "PARALLEL_MIN", 100)  # a small registry, split anyway
    monkeypatch.setattr(derive_run, "PARALLEL_BATCH", 70)
    write_bundle(tmp_path / "b", patients=400, seed=21)
    for eng in (engine, twin):
        assert run_bundle(eng, tmp_path / "b", KEY, derive=False).status == "succeeded"
    serial = derive_pending(engine, workers=1)
    parallel = derive_pending(twin, workers=2)
    assert serial.patients == parallel.patients == 400
    assert serial.written == parallel.written == 400
    state = derived_state(engine)
    assert sum(len(rows) for rows in state.values()) > 400 * 5
    assert state == derived_state(twin)  # ids included: allocated in patient order either way


def test_a_rederivation_that_changes_nothing_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    write_bundle(tmp_path / "b", patients=60, seed=22)
    run_bundle(engine, tmp_path / "b", KEY)
    before = derived_state(engine)
    again = derive_pending(engine, all_patients=True)
    assert again.patients == 60 and again.written == 0
    assert derived_state(engine) == before  # same ids, same derivation run

    # one patient's treatment changes: only that patient's rows are written again
    with engine.begin() as conn:
        key = conn.execute(select(Patient.patient_key).order_by(Patient.patient_key).limit(1)).scalar_one()
        conn.execute(text("UPDATE treatments SET end_date = NULL WHERE patient_key = :k"), {"k": key})
        conn.execute(update(Patient).values(needs_derivation=True))
    third = derive_pending(engine)
    assert third.patients == 60 and third.written == 1
    after = derived_state(engine)
    changed = {t for t in after if after[t] != before[t]}
    assert "patient_summaries" in changed and "exposures" in changed
    with engine.connect() as conn:
        runs = conn.execute(
            text("SELECT patient_key FROM patient_summaries WHERE derivation_run_id = :r"),
            {"r": third.derivation_run_id},
        ).all()
    assert [r[0] for r in runs] == [key]
