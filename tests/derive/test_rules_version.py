"""Derived data carry the rules version they were made under; nothing silently mixes versions:
`registry db upgrade`, the next load and `registry doctor` tell the operator, and
`registry derive --all` brings every patient to the current rules. Unmapped drug names are
listed per run, most frequent first; a vocabulary or normalisation change re-maps stored rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, insert, select, update

from etl.pipeline import run_bundle
from registry.cli import cli
from registry.db.models import DerivationRun, Patient, Treatment
from registry.db.setup import prepare
from registry.db.vocabulary import VOCABULARY_VERSION
from registry.derive.params import DEFAULT_PARAMETERS, RULES_REVISION
from registry.derive.run import derivation_status
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle

KEY = TEST_KEY.encode()


def _status(engine: Engine):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return derivation_status(conn)


def test_rules_version_names_revision_vocabulary_and_parameters() -> None:
    version = DEFAULT_PARAMETERS.rules_version(VOCABULARY_VERSION)
    assert version.startswith(f"r{RULES_REVISION}-{VOCABULARY_VERSION}-")
    other = type(DEFAULT_PARAMETERS)(tandem_window_days=200).rules_version(VOCABULARY_VERSION)
    assert other != version  # other parameters, other rules


def test_older_rules_are_reported_everywhere_until_derive_all(
    engine: Engine, db_url: str, cli_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    run_bundle(engine, write_bundle(tmp_path / "b1"), KEY)
    status = _status(engine)
    assert status.derived == 3 and status.stale == 0 and status.pending == 0 and status.message is None
    with engine.connect() as conn:
        versions = {v for (v,) in conn.execute(select(DerivationRun.rules_version))}
    assert versions == {status.rules_version}

    # as if these patients had been derived by an older release
    with engine.begin() as conn:
        conn.execute(update(DerivationRun).values(rules_version="r1-2026.1-00000000"))
    status = _status(engine)
    assert status.stale == 3 and status.stale_versions == {"r1-2026.1-00000000": 3}
    assert "registry derive --all" in (status.message or "")

    runner = CliRunner()
    res = runner.invoke(cli, ["doctor"])
    assert res.exit_code == 78 and "!! derivations" in res.output and "derive --all" in res.output
    res = runner.invoke(cli, ["db", "upgrade"])
    assert res.exit_code == 0 and "3 patients were derived under older rules" in res.output

    # the next load derives what changed and says the rest is stale
    rows = base_rows()
    rows["follow_up"][0]["last_contact_date"] = "2026-06-01"
    s = run_bundle(
        engine, write_bundle(tmp_path / "b2", rows, {"exported_at": "2026-07-02T02:00:00+00:00"}), KEY
    )
    assert s.derived_patients == 1
    assert any("2 patients were derived under older rules" in w for w in s.warnings)

    res = runner.invoke(cli, ["derive", "--all"])
    assert res.exit_code == 0 and f"under rules {status.rules_version}" in res.output
    assert _status(engine).message is None
    res = runner.invoke(cli, ["doctor"])
    assert res.exit_code == 0 and "3 patients, all under rules" in res.output


def test_unmapped_names_are_listed_per_run_most_frequent_first(
    engine: Engine, cli_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    template = rows["treatments"][0]
    for i, name in enumerate(
        ["Mystery Drug 5 mg", "MYSTERY DRUG", "mystery drug", "Other Thing", "Revlimid 10 mg"]
    ):
        rows["treatments"].append({**template, "treatment_id": f"RXU{i}", "drug": name})
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY)
    assert s.unmapped_drugs == {"mystery drug": 3, "other thing": 1}
    assert list(s.unmapped_drugs) == ["mystery drug", "other thing"]
    runner = CliRunner()
    res = runner.invoke(cli, ["etl", "runs"])
    assert "unmapped drug names: 'mystery drug' (3), 'other thing' (1)" in res.output
    res = runner.invoke(cli, ["etl", "runs", "--format", "json"])
    assert json.loads(res.output)[0]["unmapped_drugs"] == {"mystery drug": 3, "other thing": 1}


def test_upgrade_remaps_rows_a_new_normalisation_recognises(engine: Engine, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "b"), KEY)
    with engine.begin() as conn:
        pkey, run_id = conn.execute(select(Treatment.patient_key, Treatment.run_id).limit(1)).one()
        # a row loaded by an older release that could not map this spelling
        conn.execute(
            insert(Treatment).values(
                treatment_key="t-old",
                patient_key=pkey,
                drug_raw="Lénalidomide 10 mg",
                drug_id=None,
                start_date=dt.date(2024, 1, 1),
                run_id=run_id,
                source_row=99,
            )
        )
    prepare(engine)
    with engine.connect() as conn:
        did = conn.execute(select(Treatment.drug_id).where(Treatment.treatment_key == "t-old")).scalar()
        flagged = conn.execute(select(Patient.needs_derivation).where(Patient.patient_key == pkey)).scalar()
    assert did is not None and flagged
    assert _status(engine).pending == 1
