"""The cohort compiler: one query per engine from the definition, and a condition the database
refuses is reported naming its step."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine

from registry.cohorts.definition import load_definition
from registry.cohorts.sql import analysis_sql, compile_cohort, read_cohort
from registry.core.errors import DefinitionError

DEFN = load_definition("lenalidomide-relapse")


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_every_step_group_and_endpoint_is_in_the_query(dialect: str) -> None:
    sql = compile_cohort(DEFN, dialect)
    for step in DEFN.steps:
        assert step.condition in sql
    for i in range(1, len(DEFN.steps) + 1):
        assert f"AS step_{i}" in sql
    for g in DEFN.groups:
        assert f"WHEN {g.condition} THEN '{g.name}'" in sql
    for e in DEFN.endpoints:
        assert f"{e.name}_days" in sql and f"{e.name}_event" in sql
    assert analysis_sql(DEFN, dialect).endswith(f"WHERE step_{len(DEFN.steps)} = 1")


def test_date_arithmetic_is_the_only_difference_between_engines() -> None:
    lite, pg = compile_cohort(DEFN, "sqlite"), compile_cohort(DEFN, "postgresql")
    assert "julianday" in lite and "julianday" not in pg


def test_a_condition_the_database_refuses_names_its_step(engine: Engine) -> None:
    steps = list(DEFN.steps)
    steps[1] = dataclasses.replace(steps[1], condition="no_such_column IS NOT NULL")
    with pytest.raises(DefinitionError, match=r"step 2 \(\.\.\. with a relapse"):
        read_cohort(engine, dataclasses.replace(DEFN, steps=tuple(steps)))


def test_the_cohort_carries_lenalidomide_refractoriness_at_the_first_relapse(
    engine: Engine, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from etl.pipeline import run_bundle
    from registry.reports.study import patient_table
    from tests.conftest import TEST_KEY
    from tests.etl.bundles import write_bundle

    run_bundle(engine, write_bundle(tmp_path / "b"), TEST_KEY.encode())
    table = patient_table(read_cohort(engine, DEFN), DEFN)
    (row,) = table.to_dict("records")  # MRN-0001: relapsed on lenalidomide maintenance, then DRd
    assert row["relapse_lenalidomide_refractory"] is True and row["relapse_lenalidomide_free_days"] == 0
