"""The cohort compiler: one query per engine from the definition, and a condition the database
refuses is reported naming its step."""

from __future__ import annotations

import dataclasses

import pandas as pd
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


def test_any_declared_drug_gets_its_per_drug_facts(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The study's lenalidomide columns are generic per-drug facts: the same definition declaring
    bortezomib gets bortezomib's. MRN-0001 had bortezomib in VRd only (2019-01-20 to
    2019-05-01) and relapsed on 2022-03-01: not in maintenance, not in the 2nd line (DRd), not
    refractory, 1,035 days free of it. A drug the vocabulary does not know is refused."""
    from etl.pipeline import run_bundle
    from tests.conftest import TEST_KEY
    from tests.etl.bundles import write_bundle

    run_bundle(engine, write_bundle(tmp_path / "b"), TEST_KEY.encode())
    source = load_definition("lenalidomide-relapse")
    both = dataclasses.replace(source, drugs=("lenalidomide", "bortezomib"))
    cohort = read_cohort(engine, both).set_index("patient_key")
    row = cohort[cohort[f"step_{len(both.steps)}"] == 1].iloc[0]
    assert (bool(row["lenalidomide_maintenance"]), bool(row["l2_lenalidomide"])) == (True, True)
    assert (bool(row["bortezomib_maintenance"]), bool(row["l2_bortezomib"])) == (False, False)
    assert row["relapse_bortezomib_refractory"] == False and row["relapse_bortezomib_free_days"] == 1035  # noqa: E712
    # MRN-0002: bortezomib 2018-05-10 to 2018-09-01, transplant, relapse 2019-06-01 (no 2nd
    # line): 273 days free of it, not refractory; MRN-0003: no transplant, no relapse: no value
    by_relapse = {str(r): row for r, row in cohort.set_index("relapse_date").iterrows()}
    mrn2 = by_relapse["2019-06-01"]
    assert mrn2["relapse_bortezomib_refractory"] == False and mrn2["relapse_bortezomib_free_days"] == 273  # noqa: E712
    (no_relapse,) = [row for r, row in by_relapse.items() if r in ("None", "NaT", "nan")]
    assert pd.isna(no_relapse["relapse_bortezomib_refractory"])

    bad = tmp_path / "bad.toml"
    bad.write_text(
        resources_text("lenalidomide-relapse").replace('drugs = ["lenalidomide"]', 'drugs = ["lenalidomid"]'),
        encoding="utf-8",
    )
    with pytest.raises(DefinitionError, match="lenalidomid"):
        load_definition(str(bad))


def resources_text(name: str) -> str:
    from importlib import resources

    return resources.files("registry.cohorts").joinpath(f"{name}.toml").read_text("utf-8")
