"""One spec per input file: the ETL's stages loop over the specs and never name a file, and an
optional file may be left out of a bundle without retiring anything of it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
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
    from etl.rules import ALL_FILES
    from registry.contract import FILE_NAMES, INPUT_FILES
    from registry.db.models import CLINICAL_SOURCE_TABLES
    from registry.quality.checks import FILES

    assert tuple(SPECS) == FILE_NAMES == ALL_FILES == FILES
    assert tuple(f.table for f in INPUT_FILES) == CLINICAL_SOURCE_TABLES
    for f in INPUT_FILES:
        spec = SPECS[f.name]
        assert (spec.id_column, spec.id_namespace, spec.optional, spec.target) == (
            f.id_column,
            f.namespace,
            f.optional,
            f.table,
        )
