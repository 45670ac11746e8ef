"""The audit trail: one patient followed across bundles. Each run's change log names the
records it added, changed (and which columns), retired and reinstated — and nothing for a
patient the run did not touch; the CLI shows it without values or identifiers."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import func, select

from etl.pipeline import run_bundle
from registry.cli import cli
from registry.db.database import make_engine
from registry.db.history import patient_history
from registry.db.models import FollowUp, RecordChange, Treatment
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle

KEY = TEST_KEY.encode()


def _summary(changes: list[dict[str, Any]]) -> list[tuple[str, str, tuple[str, ...]]]:
    return sorted((c["file"], c["action"], tuple(c["columns"])) for c in changes)


def test_one_patient_across_four_bundles(cli_env: dict[str, str], tmp_path: Path) -> None:
    engine = make_engine(cli_env["REGISTRY_DATABASE_URL"])
    a = base_rows()
    run1 = run_bundle(engine, write_bundle(tmp_path / "a", a), KEY).run_id

    # night 2: R5 (daratumumab) stops for progression, a new progression, a later contact
    b = base_rows()
    r5 = next(r for r in b["treatments"] if r["treatment_id"] == "R5")
    r5.update(end_date="2023-01-01", stop_reason="progression")
    b["disease_events"].append(
        {"event_id": "E4", "patient_id": "MRN-0001", "event_date": "2023-01-01", "event_type": "progression"}
    )
    b["follow_up"][0]["last_contact_date"] = "2026-06-15"
    run2 = run_bundle(
        engine, write_bundle(tmp_path / "b", b, {"exported_at": "2026-07-02T02:00:00+00:00"}), KEY
    )

    # night 3: the site withdraws R6 and reverts everything else to night 1
    c = base_rows()
    c["treatments"] = [r for r in c["treatments"] if r["treatment_id"] != "R6"]
    run3 = run_bundle(
        engine, write_bundle(tmp_path / "c", c, {"exported_at": "2026-07-03T02:00:00+00:00"}), KEY
    )

    # night 4: R6 is back
    run4 = run_bundle(
        engine, write_bundle(tmp_path / "d", a, {"exported_at": "2026-07-04T02:00:00+00:00"}), KEY
    )

    with engine.connect() as conn:
        keys = set(conn.execute(select(FollowUp.patient_key)).scalars())
        # P1 is the one patient with six treatments (R1-R6)
        p1_key = conn.execute(
            select(Treatment.patient_key).group_by(Treatment.patient_key).having(func.count() == 6)
        ).scalar_one()
        others = keys - {p1_key}
        r6_key = conn.execute(
            select(Treatment.treatment_key).where(
                Treatment.patient_key == p1_key, Treatment.start_date == dt.date(2022, 3, 15)
            )
        ).all()
    key, runs = patient_history(engine, p1_key[:10])  # a prefix is enough
    assert key == p1_key
    # the key of 256 bits a release before migration 0021 showed finds the same patient
    before_0021 = hmac.new(KEY, b"TEST-SITE:patient:MRN-0001", hashlib.sha256).hexdigest()
    assert len(before_0021) == 64 and patient_history(engine, before_0021)[0] == p1_key
    by_run = {r.run_id: r.changes for r in runs}
    assert list(by_run) == [run1, run2.run_id, run3.run_id, run4.run_id]

    first = _summary(by_run[run1])
    assert first.count(("treatments", "added", ())) == 6
    assert ("patients", "added", ()) in first and ("follow_up", "added", ()) in first
    assert first.count(("disease_events", "added", ())) == 2

    assert _summary(by_run[run2.run_id]) == [
        ("disease_events", "added", ()),
        ("follow_up", "changed", ("last_contact_date",)),
        ("treatments", "changed", ("end_date", "stop_reason")),
    ]
    assert _summary(by_run[run3.run_id]) == [
        ("disease_events", "retired", ()),
        ("follow_up", "changed", ("last_contact_date",)),
        ("treatments", "changed", ("end_date", "stop_reason")),
        ("treatments", "retired", ()),
    ]
    assert _summary(by_run[run4.run_id]) == [("treatments", "reinstated", ())]
    # the retired and reinstated record is R6, by its pseudonymous key
    retired = [
        c["record"] for c in by_run[run3.run_id] if c["action"] == "retired" and c["file"] == "treatments"
    ]
    reinstated = [c["record"] for c in by_run[run4.run_id]]
    assert retired == reinstated and len(r6_key) == 2 and retired[0] in {k for (k,) in r6_key}

    # the other patients were untouched after night 1
    for other in others:
        _, their_runs = patient_history(engine, other)
        assert [r.run_id for r in their_runs] == [run1]
    # the log holds nothing for a patient or a record that did not change
    with engine.connect() as conn:
        logged = conn.execute(select(RecordChange.run_id)).scalars().all()
    assert set(logged) == {run1, run2.run_id, run3.run_id, run4.run_id}
    engine.dispose()

    res = CliRunner().invoke(cli, ["patient", "history", p1_key[:12]])
    assert res.exit_code == 0, res.output
    assert "changed    treatments" in res.output and "(end_date, stop_reason)" in res.output
    assert "MRN-" not in res.output and "2023-01-01" not in res.output  # no identifiers, no values
    res = CliRunner().invoke(cli, ["patient", "history", p1_key, "--format", "json"])
    assert [r["run_id"] for r in json.loads(res.output)["runs"]] == list(by_run)
    res = CliRunner().invoke(cli, ["patient", "history", "zzzz"])
    assert res.exit_code != 0 and "no patient matches" in res.output and "Traceback" not in res.output
