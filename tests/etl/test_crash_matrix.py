"""The crash matrix: a second night's load SIGKILLed at each stage, on both engines. Before the
commit the registry is exactly as it was (every table but the run ledger, which records the
attempt); killed during the derivation the load is committed and its patients flagged. Either
way the re-run completes and the registry ends where an uninterrupted run would."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text

from etl.checkpoints import STAGES as FAULT_STAGES
from etl.pipeline import run_bundle
from registry.db.models import Base, EtlRun, Patient
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle
from tests.etl.faults import start_paused

KEY = TEST_KEY.encode()


def _state(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table except the run ledger (a checksum would do; this shows diffs)."""
    with engine.connect() as conn:
        return {
            t.name: sorted(map(repr, conn.execute(text(f"SELECT * FROM {t.name}")).all()))
            for t in Base.metadata.sorted_tables
            if t.name != "etl_runs"
        }


def _second_night(tmp_path: Path) -> Path:
    rows = base_rows()
    rows["patients"] = rows["patients"][:2]  # MRN-0003 no longer sent: retired
    rows["follow_up"] = rows["follow_up"][:2]
    rows["treatments"] = [r for r in rows["treatments"] if r["patient_id"] != "MRN-0003"]
    rows["treatments"][0]["end_date"] = "2019-05-02"  # changed
    rows["treatments"][1]["dose_mg"] = "-5"  # quarantined
    return write_bundle(tmp_path / "night2", rows, {"exported_at": "2026-07-02T02:00:00+00:00"})


@pytest.mark.parametrize("stage", FAULT_STAGES)
def test_a_load_killed_at_each_stage(stage: str, engine: Engine, db_url: str, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "night1"), KEY)
    before = _state(engine)
    night2 = _second_night(tmp_path)
    proc = start_paused(db_url, ["-q", "etl", "run", str(night2)], tmp_path / "paused", stage)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()

    after_kill = _state(engine)
    with engine.connect() as conn:
        current = conn.execute(select(func.count()).select_from(Patient).where(Patient.is_current)).scalar()
        flagged = conn.execute(
            select(func.count()).select_from(Patient).where(Patient.needs_derivation, Patient.is_current)
        ).scalar()
    if stage == "derive":  # committed, flagged, not derived
        assert current == 2 and flagged and after_kill != before
    else:
        assert after_kill == before, stage

    again = run_bundle(engine, night2, KEY)
    assert again.status == ("unchanged" if stage == "derive" else "succeeded")
    with engine.connect() as conn:
        current = conn.execute(select(func.count()).select_from(Patient).where(Patient.is_current)).scalar()
        flagged = conn.execute(
            select(func.count()).select_from(Patient).where(Patient.needs_derivation)
        ).scalar()
        statuses = conn.execute(select(EtlRun.status).order_by(EtlRun.run_id)).scalars().all()
    assert current == 2 and flagged == 0
    assert statuses[0] == "succeeded" and statuses[-1] == again.status
    assert statuses[1] == ("succeeded" if stage == "derive" else "killed")
