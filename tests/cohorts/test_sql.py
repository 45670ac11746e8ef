"""The cohort compiler: one query per engine from the definition, and a condition the database
refuses is reported naming its step."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
from sqlalchemy import Engine, text

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


def _one_read(engine: Engine, defn, baseline: bool) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """The cohort as one read of every row gives it (the reference the chunked read must equal):
    the same query's rows taken at once from the driver, dates converted per cell, then typed."""
    import registry.cohorts.sql as cohort_sql

    sql, dates = cohort_sql._cohort_sql(defn, engine.dialect.name, None, baseline, None)
    with engine.connect() as conn:
        df = pd.read_sql_query(text(sql), conn)
    for col in dates:
        if col in df:
            df[col] = pd.to_datetime(df[col]).dt.date
    return cohort_sql._typed(df, defn)


@pytest.mark.parametrize("name", ["lenalidomide-relapse", "transplant-outcomes"])
def test_a_cohort_read_a_few_rows_at_a_time_equals_one_read_of_every_row(
    engine: Engine, tmp_path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:  # type: ignore[no-untyped-def]
    """Chunks of 7 rows (so some chunk has a column all missing that another has numbers in),
    each made compact, concatenated: the same frame, types included, as one read of all rows;
    within a chunk, equal dates and stages are one object (what keeps a large cohort small)."""
    import registry.cohorts.frames as frames
    from etl.pipeline import run_bundle
    from etl.synth import write_bundle
    from tests.conftest import TEST_KEY

    write_bundle(tmp_path / "b", patients=90, seed=5)
    run_bundle(engine, tmp_path / "b", TEST_KEY.encode())
    defn = load_definition(name)
    monkeypatch.setattr(frames, "CHUNK_ROWS", 7)
    got = read_cohort(engine, defn, baseline=True).sort_values("patient_key", ignore_index=True)
    want = _one_read(engine, defn, baseline=True).sort_values("patient_key", ignore_index=True)
    pd.testing.assert_frame_equal(got, want)
    assert len(got) >= 80
    monkeypatch.setattr(frames, "CHUNK_ROWS", 1000)  # within a chunk: one object a value
    one = read_cohort(engine, defn, baseline=True)
    for col in ("cutoff", "iss_stage", "sex", "index_transplant_date"):
        values = one[col].dropna()
        assert values.map(id).nunique() == values.nunique() < len(values), col


def test_chunks_with_a_column_all_missing_keep_the_type_one_read_gives() -> None:
    from registry.cohorts.frames import join_chunks

    numbers = pd.DataFrame({"k": ["a", "b"], "days": [3.0, float("nan")], "n": [1, 2]})
    missing = pd.DataFrame({"k": ["c"], "days": pd.Series([None], dtype=object), "n": [4]})
    out = join_chunks([numbers, missing], ["k", "days", "n"])
    assert out["days"].dtype == float and out["n"].dtype.kind == "i" and out["days"].isna().sum() == 2
    nothing = pd.DataFrame({"k": ["d"], "days": pd.Series([None], dtype=object), "n": [5]})
    assert join_chunks([nothing], ["k", "days", "n"])["days"].dtype == object  # as one read gives it


def test_reports_from_the_analysed_patients_equal_those_from_every_patient(
    engine: Engine, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """What the reports read (only the patients analysed, the others counted as they are read;
    the outcomes report only its columns) gives the same reports as every patient's every
    column: attrition, earliest cutoff, curves, tests, strata, responses, Table 1. (A fact the
    outcomes report used and ``cohort_columns`` left out would read as missing: this fails.)"""
    import registry.cohorts.frames as frames
    from etl.pipeline import run_bundle
    from etl.synth import write_bundle
    from registry.cohorts.sql import reach_of, read_analysed
    from registry.reports.outcomes import build_outcomes_report, cohort_columns
    from registry.reports.study import build_study_report
    from tests.conftest import TEST_KEY

    write_bundle(tmp_path / "b", patients=400, seed=8)
    run_bundle(engine, tmp_path / "b", TEST_KEY.encode())
    monkeypatch.setattr(frames, "CHUNK_ROWS", 97)  # several chunks, the last one short

    def same(a: dict, b: dict) -> None:  # type: ignore[type-arg]
        a, b = dict(a), dict(b)
        assert a.pop("generated_at") and b.pop("generated_at")
        assert a == b

    study = load_definition("lenalidomide-relapse")
    everyone = read_cohort(engine, study, baseline=True)
    analysed, reach = read_analysed(engine, study, baseline=True)
    assert reach == reach_of(everyone, study) and reach.patients == 400 > len(analysed) > 50
    same(build_study_report(analysed, study, reach=reach).data, build_study_report(everyone, study).data)

    outcomes = load_definition("transplant-outcomes")
    everyone = read_cohort(engine, outcomes, baseline=True)
    analysed, reach = read_analysed(engine, outcomes, baseline=True, columns=cohort_columns(outcomes))
    assert len(analysed.columns) < len(everyone.columns) and reach == reach_of(everyone, outcomes)
    got = build_outcomes_report(analysed, outcomes, reach=reach)
    want = build_outcomes_report(everyone, outcomes)
    same(got.data, want.data)
    pd.testing.assert_frame_equal(got.patients, want.patients)
