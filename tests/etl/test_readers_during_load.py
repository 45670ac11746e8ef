"""Readers are not blocked by a running load, on either engine (SQLite in WAL mode): while a
load holds every row written but uncommitted, an analyst's query and a cohort export read the
last committed state at once."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from sqlalchemy import Engine, text

from etl.pipeline import run_bundle
from registry.cohorts.definition import load_definition
from registry.cohorts.sql import read_cohort
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle
from tests.etl.faults import start_paused


def test_a_query_during_a_load_reads_the_committed_state_without_waiting(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    run_bundle(engine, write_bundle(tmp_path / "night1"), TEST_KEY.encode())
    rows = base_rows()
    rows["patients"] = rows["patients"][:1]
    rows["follow_up"] = rows["follow_up"][:1]
    rows["treatments"] = [r for r in rows["treatments"] if r["patient_id"] == "MRN-0001"]
    rows["disease_events"] = [r for r in rows["disease_events"] if r["patient_id"] == "MRN-0001"]
    rows["transplants"] = [r for r in rows["transplants"] if r["patient_id"] == "MRN-0001"]
    night2 = write_bundle(tmp_path / "night2", rows, {"exported_at": "2026-07-02T02:00:00+00:00"})
    proc = start_paused(db_url, ["-q", "etl", "run", str(night2)], tmp_path / "paused")
    try:
        t = time.perf_counter()
        with engine.connect() as conn:
            patients = conn.execute(text("SELECT COUNT(*) FROM v_patients")).scalar()
            if engine.dialect.name == "sqlite":  # readers never wait for the writer, nor it for them
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        cohort = read_cohort(engine, load_definition("lenalidomide-relapse"))
        seconds = time.perf_counter() - t
        assert patients == 3  # the retirements of the running load are not visible yet
        assert len(cohort) == 3 and seconds < 5  # and nobody waited for the writer
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()


def test_a_query_during_a_first_load_into_an_empty_registry_does_not_wait(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """A first load writes into empty tables (on SQLite it builds their indexes after the
    inserts): a reader still reads the empty committed state at once, on both engines."""
    proc = start_paused(
        db_url, ["-q", "etl", "run", "--no-derive", str(write_bundle(tmp_path / "b"))], tmp_path / "p"
    )
    try:
        t = time.perf_counter()
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":  # fail instead of waiting for the writer's locks
                conn.execute(text("SET lock_timeout = '5s'"))
            counts = [
                conn.execute(text(f"SELECT COUNT(*) FROM {v}")).scalar()
                for v in ("v_patients", "v_treatments")
            ]
        assert counts == [0, 0] and time.perf_counter() - t < 5
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
