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
