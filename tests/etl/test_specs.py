"""One spec per input file: the ETL's stages loop over the specs and never name a file, and an
optional file may be left out of a bundle without retiring anything of it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from etl import load, pipeline
from etl.pipeline import run_bundle
from etl.specs import SPECS
from etl.specs.base import iso
from registry.db.models import DiseaseEvent
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle

ROOT = Path(__file__).resolve().parents[2]
KEY = TEST_KEY.encode()


def test_no_stage_of_the_etl_names_an_input_file() -> None:
    names = "|".join(SPECS)
    for module in ("extract", "validate", "transform", "load", "pipeline"):
        text = (ROOT / "etl" / f"{module}.py").read_text(encoding="utf-8")
        assert not re.findall(rf'"({names})"', text), module


def test_every_spec_has_its_model_mapping_and_contract() -> None:
    for name, spec in SPECS.items():
        assert spec.filename == f"{name}.csv" and spec.to_rows is not None
        target_columns = set(load.loaded_columns(name)) - {"run_id", "source_row"}
        rows = spec.to_rows  # the mapping produces exactly the target's data columns
        assert rows.__module__ == f"etl.specs.{name}", name
        assert spec.key in target_columns, name


def test_an_optional_file_may_be_absent_and_retires_nothing(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_bundle(engine, write_bundle(tmp_path / "first"), KEY)
    optional = dataclasses.replace(SPECS["disease_events"], optional=True)
    monkeypatch.setitem(SPECS, "disease_events", optional)
    rows = base_rows()
    del rows["disease_events"]
    bundle = write_bundle(tmp_path / "second", rows, {"exported_at": "2026-07-02T02:00:00+00:00"})
    assert not (bundle / "disease_events.csv").exists()
    s = run_bundle(engine, bundle, KEY)
    # not part of the run's summary at all (nothing read, nothing retired)
    assert s.status == "succeeded" and "disease_events" not in s.files
    with engine.connect() as conn:
        current = conn.execute(
            select(func.count()).select_from(DiseaseEvent).where(DiseaseEvent.is_current)
        ).scalar()
    assert current == 3  # still current: leaving an optional file out is not deleting its rows
    assert pipeline.SPECS["disease_events"].optional  # the pipeline read the same registry of specs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2262, 4, 10))), max_size=30))
def test_dates_are_stored_as_iso_text_and_nulls_as_none(days: list[dt.date | None]) -> None:
    column = pd.Series(pd.to_datetime(days), index=range(5, 5 + len(days)))
    out = iso(column)
    assert out.tolist() == [None if d is None else d.isoformat() for d in days]
    assert list(out.index) == list(column.index) and out.dtype == object


def test_the_contract_lists_the_input_files_once() -> None:
    """registry/contract is the one list of input files: the specs, the rule catalogue's file
    lists, the data-quality checks and the models all read it (a file added there without a
    spec fails at import; a spec disagreeing with its entry fails here)."""
    from registry.contract import FILE_NAMES, INPUT_FILES
    from registry.db.models import CLINICAL_SOURCE_TABLES
    from registry.quality.checks import FILES

    assert tuple(SPECS) == FILE_NAMES == FILES
    assert tuple(f.table for f in INPUT_FILES) == CLINICAL_SOURCE_TABLES
    for f in INPUT_FILES:
        spec = SPECS[f.name]
        assert (spec.id_column, spec.namespace, spec.optional, spec.target) == (
            f.id_column,
            f.namespace,
            f.optional,
            f.table,
        )


def test_a_new_input_file_flows_through_every_layer(tmp_path: Path) -> None:
    """notes.csv added as a file is added — a contract entry with its columns, a spec module, a
    model and its table, nothing else — is written by the bundle helper, loaded, checked by the
    shared rules its columns call for (and by the follow-up rules its spec applies), quarantined
    with reasons, skipped when unchanged the next night, listed by data quality and described in
    the docs and the dictionary (run in a child process: the contract is extended before
    anything reads it)."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.etl.new_file_flow", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    first = seen["first"]
    assert (first["read"], first["loaded"], first["quarantined"]) == (8, 2, 6)
    assert seen["loaded"] == 2 and seen["second_unchanged_file"] is True
    # N3 no such day, N4 negative score, N5 unknown kind, N6 no such patient, N7 after the
    # cutoff and after the last contact, N8 an implausible score
    assert seen["quarantine_rules"] == [
        "after_last_contact",
        "date_after_cutoff",
        "invalid_date",
        "must_be_positive",
        "not_allowed",
        "orphan",
        "out_of_range",
    ]
    applies = {code for code, yes in seen["rule_files"].items() if yes}
    assert {"invalid_number", "must_be_positive", "out_of_range", "date_after_cutoff", "orphan"} <= applies
    assert not applies & {"lab_value", "end_before_start", "age_at_diagnosis"}  # others' own rules
    assert seen["quality_files"][-1] == "notes" and seen["doc_mentions_notes"] is True
    assert {"kind", "note_date", "note_key", "patient_key", "score", "run_id"} <= set(
        seen["dictionary_notes"]
    )
