"""Loading: structure refusals, idempotency, retirement, ordering, locks, kills, hostile text,
privacy and the CLI contract — on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, event, func, select, text

from etl import load
from etl.pipeline import run_bundle
from etl.synth import write_bundle as synth_bundle
from registry.cli import cli
from registry.core.errors import EXIT_DATA, EXIT_TEMPFAIL, BundleRefused
from registry.db.bulk import refresh_statistics
from registry.db.history import patient_history
from registry.db.models import CLINICAL_SOURCE_TABLES, EtlRun, Patient, QuarantinedRow, Treatment
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle
from tests.etl.faults import ROOT, paused_command
from tests.etl.test_unchanged_rows import edit_rows, next_night, state

KEY = TEST_KEY.encode()


def snapshot(engine: Engine) -> dict[str, object]:
    """Every clinical and derived row, for 'the database is exactly as before' checks."""
    out: dict[str, object] = {}
    with engine.connect() as conn:
        for t in (*CLINICAL_SOURCE_TABLES, "quarantine", "sites", "lines_of_therapy", "regimens"):
            rows = conn.execute(text(f"SELECT * FROM {t}")).all()
            out[t] = sorted(map(repr, rows))
    return out


# --------------------------------------------------------------------------- structure
# refused while reading the rows, inside the load's transaction: on both engines
MID_LOAD = [("not_utf8", "not valid UTF-8"), ("bad_quote", "unreadable CSV")]
# refused from the manifest or a header, before anything is written: the engine plays no part
BEFORE_LOAD = [
    ("missing_file", "follow_up.csv: missing"),
    ("missing_column", "missing required column(s) ['drug']"),
    ("format_version", "format_version"),
    ("bad_site", "site_id"),
    ("naive_timestamp", "UTC offset"),
    ("empty_file", "empty file"),
    ("no_manifest", "manifest.json: missing"),
    ("bad_json", "not valid UTF-8 JSON"),
    ("bad_mode", "'mode'"),
]


@pytest.mark.parametrize(("breakage", "needle"), MID_LOAD)
def test_problem_found_mid_load_refuses_the_bundle_and_changes_nothing(
    engine: Engine, tmp_path: Path, breakage: str, needle: str
) -> None:
    _refused_and_unchanged(engine, tmp_path, breakage, needle)


@pytest.mark.parametrize(("breakage", "needle"), BEFORE_LOAD)
def test_structural_problem_refuses_the_bundle_and_changes_nothing(
    sqlite_engine: Engine, tmp_path: Path, breakage: str, needle: str
) -> None:
    _refused_and_unchanged(sqlite_engine, tmp_path, breakage, needle)


def _refused_and_unchanged(engine: Engine, tmp_path: Path, breakage: str, needle: str) -> None:
    run_bundle(engine, write_bundle(tmp_path / "first"), KEY)
    before = snapshot(engine)
    b = write_bundle(tmp_path / "b", manifest={"exported_at": "2026-08-01T00:00:00+00:00"})
    if breakage == "missing_file":
        (b / "follow_up.csv").unlink()
    elif breakage == "missing_column":
        text_ = (b / "treatments.csv").read_text().replace("drug,", "medication,", 1)
        (b / "treatments.csv").write_text(text_)
    elif breakage == "format_version":
        m = json.loads((b / "manifest.json").read_text())
        (b / "manifest.json").write_text(json.dumps({**m, "format_version": 2}))
    elif breakage == "bad_site":
        m = json.loads((b / "manifest.json").read_text())
        (b / "manifest.json").write_text(json.dumps({**m, "site_id": "bad site!"}))
    elif breakage == "naive_timestamp":
        m = json.loads((b / "manifest.json").read_text())
        (b / "manifest.json").write_text(json.dumps({**m, "exported_at": "2026-08-01T00:00:00"}))
    elif breakage == "not_utf8":
        (b / "treatments.csv").write_bytes(
            (b / "treatments.csv").read_bytes() + b"R9,MRN-0003,caf\xe9,2020-02-10,,,,\n"
        )
    elif breakage == "empty_file":
        (b / "disease_events.csv").write_text("")
    elif breakage == "no_manifest":
        (b / "manifest.json").unlink()
    elif breakage == "bad_json":
        (b / "manifest.json").write_text("{not json")
    elif breakage == "bad_mode":
        m = json.loads((b / "manifest.json").read_text())
        (b / "manifest.json").write_text(json.dumps({**m, "mode": "append"}))
    elif breakage == "bad_quote":
        with (b / "treatments.csv").open("a") as fh:
            fh.write('R9,MRN-0003,"lenalidomide"x,2020-02-10,,,,\n')
    with pytest.raises(BundleRefused) as err:
        run_bundle(engine, b, KEY)
    assert needle in err.value.message
    assert snapshot(engine) == before
    with engine.connect() as conn:
        last = conn.execute(select(EtlRun.status).order_by(EtlRun.run_id.desc())).scalar()
    assert last == "refused"


def test_cli_refusal_is_one_clear_message_and_exit_65(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    b = write_bundle(tmp_path / "b")
    (b / "patients.csv").unlink()
    res = CliRunner().invoke(cli, ["etl", "run", str(b)])
    assert res.exit_code == EXIT_DATA
    assert "patients.csv: missing" in res.output and "Traceback" not in res.output


# --------------------------------------------------------------------------- formats
def test_bom_crlf_header_case_extra_and_identifier_columns(engine: Engine, tmp_path: Path) -> None:
    rows = base_rows()
    for r in rows["patients"]:
        r.update(name="Jane Doe", favourite_colour="blue")
    b = write_bundle(
        tmp_path / "b",
        rows,
        line_ending="\r\n",
        bom=True,
        extra_columns={"patients": ["name", "favourite_colour"]},
    )
    head = (b / "treatments.csv").read_bytes().decode("utf-8-sig").split("\r\n", 1)
    header = " TREATMENT_ID , Patient_Id,DRUG,start_date,end_date,dose_mg,intent,stop_reason"
    (b / "treatments.csv").write_bytes((header + "\r\n" + head[1]).encode("utf-8"))
    s = run_bundle(engine, b, KEY)
    assert s.status == "succeeded" and s.quarantined == 0
    assert s.files["patients"].warnings == 2
    assert any("direct identifier" in w and "'name'" in w for w in s.warnings)
    dump = json.dumps(snapshot(engine))
    assert "Jane Doe" not in dump and "blue" not in dump


def test_zip_bundle_with_a_top_folder(engine: Engine, tmp_path: Path) -> None:
    b = write_bundle(tmp_path / "export-2026")
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in b.iterdir():
            zf.write(f, f"export-2026/{f.name}")
    assert run_bundle(engine, z, KEY).status == "succeeded"


def test_row_with_the_wrong_number_of_fields_is_quarantined(engine: Engine, tmp_path: Path) -> None:
    b = write_bundle(tmp_path / "b")
    with (b / "treatments.csv").open("a") as fh:
        fh.write("R9,MRN-0003,lenalidomide,2020-02-10,,,,,,extra\n\n")
    s = run_bundle(engine, b, KEY)
    assert s.files["treatments"].read == 9 and s.files["treatments"].quarantined == 1
    with engine.connect() as conn:
        (reasons,) = conn.execute(select(QuarantinedRow.reasons)).one()
    assert reasons[0]["rule"] == "wrong_field_count"


# --------------------------------------------------------------------------- idempotency
def test_same_bundle_twice_changes_nothing_and_says_so(engine: Engine, tmp_path: Path) -> None:
    b = write_bundle(tmp_path / "b")
    first = run_bundle(engine, b, KEY)
    assert first.status == "succeeded"
    before = snapshot(engine)
    again = run_bundle(engine, b, KEY)
    assert again.status == "unchanged" and "already loaded" in again.message
    forced = run_bundle(engine, b, KEY, force=True)
    assert forced.status == "succeeded"
    assert all(c.changed == 0 and c.retired == 0 for c in forced.files.values())
    after = snapshot(engine)
    for bookkeeping in ("quarantine", "sites"):  # sites.last_run_id records the forced run
        after.pop(bookkeeping), before.pop(bookkeeping)
    assert after == before


def test_full_mode_retires_what_the_site_no_longer_sends(engine: Engine, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "a"), KEY)
    rows = base_rows()
    rows["patients"] = rows["patients"][:2]
    rows["follow_up"] = rows["follow_up"][:2]
    rows["treatments"] = [
        r for r in rows["treatments"] if r["patient_id"] != "MRN-0003" and r["treatment_id"] != "R3"
    ]
    s = run_bundle(
        engine,
        write_bundle(tmp_path / "b", rows, {"exported_at": "2026-08-01T00:00:00+00:00"}),
        KEY,
    )
    assert s.files["patients"].retired == 1 and s.files["treatments"].retired == 2
    with engine.connect() as conn:
        current = conn.execute(select(func.count()).select_from(Patient).where(Patient.is_current)).scalar()
        total = conn.execute(select(func.count()).select_from(Patient)).scalar()
        retired_rx = (
            conn.execute(select(Treatment.retired_run_id).where(~Treatment.is_current)).scalars().all()
        )
    assert (current, total) == (2, 3)
    assert retired_rx == [s.run_id, s.run_id]


def test_an_empty_full_bundle_does_not_retire_a_whole_site(engine: Engine, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "a"), KEY)
    before = snapshot(engine)
    empty = {name: [] for name in base_rows()}
    b = write_bundle(tmp_path / "b", empty, {"exported_at": "2026-08-01T00:00:00+00:00"})
    with pytest.raises(BundleRefused, match="retire the whole site"):
        run_bundle(engine, b, KEY)
    assert snapshot(engine) == before
    forced = run_bundle(engine, b, KEY, force=True)
    assert forced.files["patients"].retired == 3


def test_incremental_only_upserts_and_accepts_known_patients(engine: Engine, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "a"), KEY)
    rows = {
        "patients": [],
        "transplants": [],
        "disease_events": [],
        "follow_up": [],
        "treatments": [
            {
                "treatment_id": "R99",
                "patient_id": "MRN-0003",
                "drug": "pomalidomide",
                "start_date": "2021-01-01",
                "end_date": "2021-03-01",
            }
        ],
    }
    s = run_bundle(
        engine,
        write_bundle(
            tmp_path / "b",
            rows,
            {"mode": "incremental", "exported_at": "2026-08-01T00:00:00+00:00"},
        ),
        KEY,
    )
    assert s.files["treatments"].loaded == 1 and s.files["treatments"].quarantined == 0
    assert sum(c.retired for c in s.files.values()) == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Patient).where(Patient.is_current)).scalar() == 3


def test_older_bundle_is_refused_unless_forced(engine: Engine, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "new"), KEY)
    old = write_bundle(
        tmp_path / "old", manifest={"exported_at": "2026-01-01T00:00:00+00:00", "data_cutoff": "2025-12-31"}
    )
    with pytest.raises(BundleRefused, match="older than the last bundle"):
        run_bundle(engine, old, KEY)
    assert run_bundle(engine, old, KEY, force=True).status == "succeeded"


# --------------------------------------------------------------------------- hostile text
def test_hostile_text_is_stored_verbatim_or_quarantined(engine: Engine, tmp_path: Path) -> None:
    rows = base_rows()
    evil = "x'); DROP TABLE patients; --"
    rows["treatments"][7]["drug"] = evil
    rows["treatments"][6]["drug"] = 'he said "hi",\ttab ¿ünïcødé?'
    rows["treatments"][4]["drug"] = "two\nlines"  # no drug name spans lines: a stray quote's work
    rows["treatments"][5]["drug"] = "L" * 500
    rows["transplants"][0]["conditioning_agent"] = "Robert'); --"
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY)
    assert s.files["treatments"].quarantined == 2  # the 500-character name, the line break
    with engine.connect() as conn:
        drugs = set(conn.execute(select(Treatment.drug_raw)).scalars())
        assert conn.execute(select(func.count()).select_from(Patient)).scalar() == 3
        stored = [
            json.dumps(r, ensure_ascii=False) for r in conn.execute(select(QuarantinedRow.row_data)).scalars()
        ]
    assert evil in drugs and 'he said "hi",\ttab ¿ünïcødé?' in drugs
    assert any('"two…"' in r for r in stored) and not any("lines" in r for r in stored)
    assert s.unmapped_drugs  # unknown names are listed, not guessed


# --------------------------------------------------------------------------- privacy
def test_only_pseudonyms_are_stored(engine: Engine, tmp_path: Path) -> None:
    rows = base_rows()
    rows["treatments"][7]["stop_reason"] = "lost"  # a quarantined row keeps no raw id either
    run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY)
    expected = hmac.new(KEY, b"TEST-SITE:patient:MRN-0001", hashlib.sha256).hexdigest()[:32]
    expected_rx = hmac.new(KEY, b"TEST-SITE:treatment:R1", hashlib.sha256).hexdigest()[:32]
    with engine.connect() as conn:
        keys = set(conn.execute(select(Patient.patient_key)).scalars())
        assert expected_rx in set(conn.execute(select(Treatment.treatment_key)).scalars())
        q = conn.execute(select(QuarantinedRow.row_data)).scalars().all()
    assert expected in keys
    dump = json.dumps(snapshot(engine))
    for raw in ("MRN-0001", "MRN-0002", "MRN-0003", "TX1", '"R8"', '"E1"'):
        assert raw not in dump
    assert (
        q
        and q[0]["patient_id"]
        == hmac.new(KEY, b"TEST-SITE:patient:MRN-0003", hashlib.sha256).hexdigest()[:32]
    )


def test_refuses_to_run_without_a_key(db_url: str, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("REGISTRY_PSEUDONYM_KEY", raising=False)
    res = CliRunner().invoke(cli, ["--database-url", db_url, "etl", "run", str(write_bundle(tmp_path / "b"))])
    assert res.exit_code == 78 and "no pseudonym key" in res.output


# --------------------------------------------------------------------------- CLI contract
def test_json_summary_is_the_only_thing_on_stdout(sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["treatments"][7]["drug"] = "mystery drug"
    b = write_bundle(tmp_path / "b", rows)
    proc = subprocess.run(
        [sys.executable, "-m", "registry.cli", "etl", "run", str(b), "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, **sqlite_cli_env},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["files"]["treatments"] == {
        "read": 8,
        "loaded": 8,
        "quarantined": 0,
        "warnings": 1,
        "changed": 8,
        "retired": 0,
        "findings": 0,
        "unchanged_file": False,
        "unchanged_rows": 0,
        "lines": 8,  # physical lines after the header: one record each
    }
    assert "mystery drug" in proc.stderr  # warnings go to stderr


def test_golden_dirty_bundle_quarantines_exactly_what_was_injected(engine: Engine, tmp_path: Path) -> None:
    truth = synth_bundle(tmp_path / "g", patients=400, seed=11, dirty=True, labs=False)
    s = run_bundle(engine, tmp_path / "g", KEY)
    assert {k: v.quarantined for k, v in s.files.items()} == truth["quarantine"]
    assert sum(truth["quarantine"].values()) > 10
    for c in s.files.values():
        assert c.read == c.loaded + c.quarantined


# --------------------------------------------------------------------------- kill and lock
def _start_paused(db_url: str, bundle: Path, marker: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REGISTRY_DATABASE_URL": db_url,
        "REGISTRY_PSEUDONYM_KEY": TEST_KEY,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.Popen(
        paused_command(marker, "commit", 60, ["etl", "run", str(bundle)]),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(marker: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the load never reached the pause point"
        time.sleep(0.05)


def test_sigkill_mid_load_leaves_the_database_unchanged(db_url: str, engine: Engine, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "first"), KEY)
    before = snapshot(engine)
    synth_bundle(tmp_path / "big", patients=300, seed=5)
    marker = tmp_path / "paused"
    proc = _start_paused(db_url, tmp_path / "big", marker)
    _wait_for(marker, proc)  # every row written, nothing committed
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert snapshot(engine) == before
    s = run_bundle(engine, tmp_path / "big", KEY)  # the next run succeeds
    assert s.status == "succeeded"
    with engine.connect() as conn:
        statuses = [r for (r,) in conn.execute(select(EtlRun.status).order_by(EtlRun.run_id))]
    assert statuses == ["succeeded", "killed", "succeeded"]


def test_second_concurrent_run_exits_with_lock_held(db_url: str, engine: Engine, tmp_path: Path) -> None:
    write_bundle(tmp_path / "a")
    marker = tmp_path / "paused"
    proc = _start_paused(db_url, tmp_path / "a", marker)
    try:
        _wait_for(marker, proc)
        env = {**os.environ, "REGISTRY_DATABASE_URL": db_url, "REGISTRY_PSEUDONYM_KEY": TEST_KEY}
        other = subprocess.run(
            [sys.executable, "-m", "registry.cli", "etl", "run", str(tmp_path / "a")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert other.returncode == EXIT_TEMPFAIL
        assert "another run holds the lock" in other.stderr
        assert "Traceback" not in other.stderr
    finally:
        proc.kill()
        proc.communicate()


# --------------------------------------------------------------------------- a mostly broken file
def _dd_mm_yyyy(folder: Path) -> None:
    """Rewrite every treatment start date as DD/MM/YYYY (a site switched its date format)."""
    path = folder / "treatments.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    for r in rows:
        y, m, d = r["start_date"].split("-")
        r["start_date"] = f"{d}/{m}/{y}"
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def test_a_file_mostly_quarantined_refuses_the_whole_bundle(engine: Engine, tmp_path: Path) -> None:
    synth_bundle(tmp_path / "b", patients=40, seed=3)
    _dd_mm_yyyy(tmp_path / "b")
    before = snapshot(engine)
    with pytest.raises(BundleRefused) as err:
        run_bundle(engine, tmp_path / "b", KEY)
    assert "treatments.csv" in err.value.message and "invalid_date in start_date" in err.value.message
    assert snapshot(engine) == before  # nothing loaded, not even the valid patients
    dry = run_bundle(engine, tmp_path / "b", KEY, dry_run=True)  # validation reports it
    assert any("a load would be refused" in w for w in dry.warnings)
    s = run_bundle(engine, tmp_path / "b", KEY, max_quarantine_rate=1.0)  # an explicit choice
    assert s.status == "succeeded" and s.files["treatments"].loaded == 0


def test_root_causes_come_before_the_orphans_that_follow(sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["patients"][0]["birth_date"] = "01/03/1960"  # its children become orphans
    runner = CliRunner()
    assert runner.invoke(cli, ["etl", "run", str(write_bundle(tmp_path / "b", rows))]).exit_code == 0
    res = runner.invoke(cli, ["etl", "quarantine", "--causes"])
    lines = res.output.strip().splitlines()
    assert lines[0] == "rule,column,rows" and lines[1] == "invalid_date,birth_date,1"
    assert all(line.startswith("orphan,") for line in lines[2:]) and len(lines) > 2


def test_retirement_is_an_anti_join_not_a_scan_per_row(engine: Engine, tmp_path: Path) -> None:
    """The plan of the retirement statement, on a registry holding thousands of treatment
    rows: PostgreSQL must use an anti-join (NOT IN over a staging table became a per-row scan
    once it outgrew work_mem); SQLite must search the staging table by its index."""
    synth_bundle(tmp_path / "b", patients=300, seed=5)
    run_bundle(engine, tmp_path / "b", KEY)
    _, missing = load.missing_records("treatments")
    with engine.begin() as conn:
        load.create_stages(conn)
        load.index_stage(conn, "treatments")
        params = {"site": "SYNTH-01", "f": "treatments"}
        if conn.dialect.name == "postgresql":
            plan = "\n".join(
                r[0] for r in conn.execute(text(f"EXPLAIN SELECT 1 FROM treatments WHERE {missing}"), params)
            )
            assert "Anti Join" in plan, plan
            assert "SubPlan" not in plan, plan
        else:
            plan = " ".join(
                str(r)
                for r in conn.execute(
                    text(f"EXPLAIN QUERY PLAN SELECT 1 FROM treatments WHERE {missing}"), params
                )
            )
            assert "ix_stage_treatments_key" in plan, plan
        # the records found are then retired by key: a search of the table, not a scan
        keys = [k for (k,) in conn.execute(text("SELECT treatment_key FROM treatments LIMIT 20"))]
        conn.execute(
            text("INSERT INTO stage_retiring (k, patient_key) VALUES (:k, 'p')"), [{"k": k} for k in keys]
        )
        conn.execute(text("ANALYZE stage_retiring"))
        update = (
            "UPDATE treatments SET is_current = FALSE, retired_run_id = 1 "
            "WHERE treatment_key IN (SELECT k FROM stage_retiring)"
        )
        explain = "EXPLAIN" if conn.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
        plan = " ".join(str(r) for r in conn.execute(text(f"{explain} {update}")))
        assert "Seq Scan on treatments" not in plan and "SCAN treatments" not in plan, plan
        conn.rollback()


# --------------------------------------------------------------------------- unchanged files
def _redeliver(src: Path, dst: Path, hours: int) -> Path:
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    exported = dt.datetime.fromisoformat(manifest["exported_at"]) + dt.timedelta(hours=hours)
    (dst / "manifest.json").write_text(json.dumps({**manifest, "exported_at": exported.isoformat()}))
    return dst


def test_files_delivered_again_unchanged_are_not_read_and_retire_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    synth_bundle(tmp_path / "n1", patients=60, seed=8)
    first = run_bundle(engine, tmp_path / "n1", KEY)
    before = snapshot(engine)
    again = run_bundle(engine, _redeliver(tmp_path / "n1", tmp_path / "n2", 24), KEY)
    assert again.status == "succeeded"
    assert all(f.unchanged_file and f.read == 0 and f.retired == 0 for f in again.files.values())
    after = snapshot(engine)
    assert "not read again" in again.message
    del after["sites"], before["sites"]  # only the site's last export moved on
    assert after == before

    # one file changed: only it is read (the patient files, read cleanly last time, are the
    # registry's current patients: it is checked against those)
    assert first.files["patients"].quarantined == first.files["follow_up"].quarantined == 0
    n3 = _redeliver(tmp_path / "n1", tmp_path / "n3", 48)
    text_ = (n3 / "disease_events.csv").read_text()
    (n3 / "disease_events.csv").write_text("\n".join(text_.splitlines()[:-1]) + "\n")  # one event fewer
    third = run_bundle(engine, n3, KEY)
    read = {name for name, f in third.files.items() if not f.unchanged_file}
    assert read == {"disease_events"}
    assert third.files["disease_events"].retired == 1 and third.files["treatments"].retired == 0
    assert third.files["patients"].read == 0

    # --force reads everything again
    forced = run_bundle(engine, _redeliver(n3, tmp_path / "n4", 1), KEY, force=True)
    assert not any(f.unchanged_file for f in forced.files.values())


def test_patient_files_that_lost_a_row_last_time_are_read_with_a_changed_file(
    engine: Engine, tmp_path: Path
) -> None:
    synth_bundle(tmp_path / "n1", patients=40, seed=3)
    lines = (tmp_path / "n1" / "follow_up.csv").read_text().splitlines()
    lines[1] = lines[1] + ",an extra field"  # malformed: quarantined, its patient unknown
    (tmp_path / "n1" / "follow_up.csv").write_text("\n".join(lines) + "\n")
    first = run_bundle(engine, tmp_path / "n1", KEY)
    assert first.files["follow_up"].quarantined == 1
    n2 = _redeliver(tmp_path / "n1", tmp_path / "n2", 24)
    text_ = (n2 / "disease_events.csv").read_text()
    (n2 / "disease_events.csv").write_text("\n".join(text_.splitlines()[:-1]) + "\n")
    second = run_bundle(engine, n2, KEY)
    read = {name for name, f in second.files.items() if not f.unchanged_file}
    assert read == {"patients", "follow_up", "disease_events"}
    assert second.files["follow_up"].quarantined == 1


def test_a_file_remembered_under_another_reading_version_is_read_again(
    engine: Engine, tmp_path: Path
) -> None:
    synth_bundle(tmp_path / "n1", patients=30, seed=8)
    run_bundle(engine, tmp_path / "n1", KEY)
    with engine.begin() as conn:  # as if an earlier release (other rules or vocabulary) read them
        conn.execute(text("UPDATE source_files SET registry_version = '0.0.9+000000000000'"))
    again = run_bundle(engine, _redeliver(tmp_path / "n1", tmp_path / "n2", 24), KEY)
    assert not any(f.unchanged_file for f in again.files.values())


def test_unstaging_duplicates_is_a_few_statements_not_one_scan_per_row(engine: Engine) -> None:
    """Duplicates leave the stage in statements of 5,000 rows: the stage has no index on
    ``source_row``, and a statement per row was a full scan per duplicate (quadratic; 150 s of a
    100,000-patient load)."""
    from sqlalchemy import event

    statements: list[str] = []
    with engine.begin() as conn:
        load.create_stages(conn)
        rows = [{"treatment_key": f"k{i}", "source_row": i} for i in range(12_000)]
        st = load.stage_name("treatments")
        conn.execute(
            text(f"INSERT INTO {st} (treatment_key, source_row) VALUES (:treatment_key, :source_row)"), rows
        )

        def seen(conn_, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
            statements.append(statement)

        event.listen(engine, "before_cursor_execute", seen)
        try:
            load.unstage(conn, "treatments", list(range(0, 12_000, 1)))
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        left = conn.execute(text(f"SELECT COUNT(*) FROM {st}")).scalar()
    assert left == 0 and len([s for s in statements if s.lstrip().upper().startswith("DELETE")]) == 3


def test_a_load_that_changes_much_of_a_table_refreshes_its_statistics(engine: Engine, tmp_path: Path) -> None:
    """PostgreSQL: the tables a first load filled (and the derived tables) are analysed in the
    load, not left to autovacuum: the derivation reads them at once. SQLite: nothing to do."""
    synth_bundle(tmp_path / "b", patients=120, seed=8)
    run_bundle(engine, tmp_path / "b", KEY)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            assert refresh_statistics(conn, {"treatments": 10**6}) == []
            return
        analysed = dict(
            conn.execute(
                text(
                    "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                    "WHERE relname IN ('treatments', 'patients', 'exposures', 'exposure_sources')"
                )
            ).all()
        )
        assert analysed == {"treatments": True, "patients": True, "exposures": True, "exposure_sources": True}
        # a few rows in a large table: left to autovacuum
        assert refresh_statistics(conn, {"treatments": 1}) == []
        assert refresh_statistics(conn, {"treatments": 10**6}) == ["treatments"]


def test_duplicate_keys_are_found_by_hashing_the_stage_and_the_planner_is_left_as_it_was(
    engine: Engine,
) -> None:
    """Staged rows sharing a key, or sharing one with a quarantined row, are all returned in
    source order; on PostgreSQL without walking the key index (a fresh temporary table has no
    visibility map: every entry was a table fetch in random order), and the index scans the
    statement turned off are on again for the rest of the load."""
    with engine.begin() as conn:
        load.create_stages(conn)
        st = load.stage_name("treatments")
        rows = [{"k": f"k{i % 2000}" if i < 2003 else f"k{i}", "r": i + 2} for i in range(5000)]
        conn.execute(text(f"INSERT INTO {st} (treatment_key, source_row) VALUES (:k, :r)"), rows)
        load.stage_quarantined_keys(conn, "treatments", ["k4500", "k9999"])
        load.index_stage(conn, "treatments")
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL work_mem = '64kB'")  # as if the stage outgrew memory
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    text(f"EXPLAIN SELECT treatment_key FROM {st} GROUP BY treatment_key HAVING COUNT(*) > 1")
                )
            )
            assert "Index Only Scan" in plan or "Index Scan" in plan, plan  # what it would do
            seen: list[str] = []

            def explain(conn_, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
                if "HAVING COUNT(*) > 1" in statement:
                    cursor.execute("EXPLAIN " + statement, params)
                    seen.append("\n".join(r[0] for r in cursor.fetchall()))

            event.listen(engine, "before_cursor_execute", explain)
            try:
                dups = load.duplicate_rows(conn, "treatments")
            finally:
                event.remove(engine, "before_cursor_execute", explain)
            assert seen and "Index" not in seen[0], seen
            assert conn.exec_driver_sql("SHOW enable_indexscan").scalar() == "on"
            assert conn.exec_driver_sql("SHOW enable_indexonlyscan").scalar() == "on"
        else:
            dups = load.duplicate_rows(conn, "treatments")
    assert dups["source_row"].tolist() == [2, 3, 4, 2002, 2003, 2004, 4502]
    assert dups["treatment_key"].tolist() == ["k0", "k1", "k2", "k0", "k1", "k2", "k4500"]


def _without_log(s: dict[str, list[str]]) -> dict[str, list[str]]:
    return {t: rows for t, rows in s.items() if t != "record_changes"}


def test_a_plain_insert_only_when_every_staged_row_is_new(
    engine: Engine, twin: Engine, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A file whose staged rows are all new records (a first load; a night that only adds) is
    merged by a plain insert; a night that changes a record upserts. The registry ends as one
    that always upserts, and a plain insert never overwrites a record that exists."""
    decided: dict[str, bool] = {}
    real = load.only_added

    def spy(conn, name, run_id, logged):  # type: ignore[no-untyped-def]
        decided[name] = real(conn, name, run_id, logged)
        return decided[name] if conn.engine is engine else False  # the twin always upserts

    monkeypatch.setattr(load, "only_added", spy)
    night1 = tmp_path / "n1"
    synth_bundle(night1, patients=60, seed=12)
    run_bundle(engine, night1, KEY)
    assert decided == {}  # the site's first load: every staged row is new, nothing to ask
    # the twin loads it as if the site were known: a change-log row a record, and upserts
    first_load = load.first_load_of_site
    monkeypatch.setattr(load, "first_load_of_site", lambda conn, site: False)
    run_bundle(twin, night1, KEY)
    monkeypatch.setattr(load, "first_load_of_site", first_load)
    assert decided == {name: True for name in load.TARGETS}  # (all new; the twin upserts anyway)
    assert _without_log(state(engine)) == _without_log(state(twin))
    # one change-log row a patient and file against one a record: the same history
    with engine.connect() as conn:
        actions = dict(
            conn.execute(text("SELECT action, COUNT(*) FROM record_changes GROUP BY action")).all()
        )
        keys = list(conn.execute(select(Patient.patient_key).order_by(Patient.patient_key)).scalars())
    with twin.connect() as conn:
        added = conn.execute(text("SELECT COUNT(*) FROM record_changes WHERE action = 'added'")).scalar()
    assert set(actions) == {"loaded"} and actions["loaded"] < added / 5
    for k in keys[:: len(keys) // 6]:
        ours, theirs = patient_history(engine, k)[1], patient_history(twin, k)[1]
        assert [sorted(map(repr, r.changes)) for r in ours] == [sorted(map(repr, r.changes)) for r in theirs]
        assert len(ours[0].changes) >= 3

    def changes(d: Path) -> None:
        def treatments(rows: list[dict[str, str]]) -> list[dict[str, str]]:
            rows[0]["drug"] = "Bortezomib" if rows[0]["drug"] != "Bortezomib" else "Lenalidomide"
            return [*rows, dict(rows[1], treatment_id="RX-NEW-1")]

        edit_rows(d / "treatments.csv", treatments)
        edit_rows(d / "disease_events.csv", lambda rows: [*rows, dict(rows[0], event_id="EV-NEW-1")])

    night2 = next_night(night1, tmp_path / "n2", changes)
    decided.clear()
    run_bundle(engine, night2, KEY)
    assert decided["treatments"] is False  # a changed record: upserted
    assert decided["disease_events"] is True  # one added record, the rest unchanged
    run_bundle(twin, night2, KEY)
    assert _without_log(state(engine)) == _without_log(state(twin))
    for k in keys:  # night 2 logged record by record on both
        assert [r.changes for r in patient_history(engine, k)[1][1:]] == [
            r.changes for r in patient_history(twin, k)[1][1:]
        ]

    with engine.connect() as conn:
        trans = conn.begin()
        key = conn.execute(text("SELECT treatment_key FROM treatments LIMIT 1")).scalar()
        load.create_stages(conn)
        cols = ", ".join(load.loaded_columns("treatments"))
        st = load.stage_name("treatments")
        conn.execute(
            text(f"INSERT INTO {st} SELECT {cols} FROM treatments WHERE treatment_key = :k"), {"k": key}
        )
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            load.merge(conn, "treatments", only_new=True)
        trans.rollback()


def test_a_first_load_flags_its_patients_once(engine: Engine, tmp_path: Path) -> None:
    """The patients file flags every patient it loads; on a first load the other files find
    nobody left to flag and rewrite no patient row (each file used to update them all again)."""
    synth_bundle(tmp_path / "b", patients=40, seed=5)
    flagging: list[str] = []

    def seen(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().startswith("UPDATE patients SET needs_derivation"):
            flagging.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        run_bundle(engine, tmp_path / "b", KEY, derive=False)
        assert flagging == []
        with engine.begin() as conn:  # as after a derivation: files look their patients up again
            conn.execute(text("UPDATE patients SET needs_derivation = FALSE"))
        run_bundle(engine, tmp_path / "b", KEY, derive=False, force=True)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert any("record_changes" in statement for statement in flagging)  # looked up again
    with engine.connect() as conn:  # (the reload changed nothing: nobody flagged)
        assert conn.execute(text("SELECT COUNT(*) FROM patients WHERE needs_derivation")).scalar() == 0


def test_a_merged_record_naming_no_patient_refuses_the_bundle(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event tables carry no foreign key to patients (a trigger a row): before the commit
    every merged record is checked against patients and drugs at once. With the orphan rule
    broken on purpose, a treatment of a patient nobody delivered is refused there, by file and
    column, and nothing is written; with the rule in force the same row is quarantined."""
    from etl import validate
    from registry.contract.rules import RuleCode

    rows = base_rows()
    rows["treatments"].append(
        {
            "treatment_id": "RX-ORPHAN",
            "patient_id": "MRN-9999",
            "drug": "lenalidomide",
            "start_date": "2021-01-01",
        }
    )
    original = validate._patient_link

    def without_orphan_rule(c, facts, keys):  # type: ignore[no-untyped-def]
        add = c.log.add
        c.log.add = lambda mask, column, raw, code, *a: (
            None if code == RuleCode.ORPHAN else add(mask, column, raw, code, *a)
        )
        try:
            original(c, facts, keys)
        finally:
            c.log.add = add

    monkeypatch.setattr(validate, "_patient_link", without_orphan_rule)
    with pytest.raises(BundleRefused) as err:
        run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY)
    assert [(p.file, p.problem) for p in err.value.problems] == [
        ("treatments.csv", "1 merged records name a patient_key the registry does not have")
    ]
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Patient)) == 0
        assert conn.scalar(select(func.count()).select_from(Treatment)) == 0
    monkeypatch.setattr(validate, "_patient_link", original)
    s = run_bundle(engine, write_bundle(tmp_path / "b2", rows), KEY)
    assert s.files["treatments"].quarantined == 1 and s.status == "succeeded"


def _index_names(engine: Engine) -> dict[str, set[str]]:
    from sqlalchemy import inspect

    insp = inspect(engine)
    return {
        t: {ix["name"] for ix in insp.get_indexes(t)} for t in (*CLINICAL_SOURCE_TABLES, "record_changes")
    }


def test_a_first_load_keeps_its_tables_indexes_and_a_failure_in_its_merge_writes_nothing(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first load inserts into empty tables with their indexes in place (dropping them and
    building them after gained nothing on SQLite and would make PostgreSQL's readers wait); a
    failure between two files' merges rolls back everything, the site included."""
    declared = _index_names(engine)
    assert declared["treatments"] >= {"ix_treatments_patient_start", "ix_treatments_drug_id"}
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda c, cur, sql, *a: statements.append(sql))

    def broken(conn, name, **kw):  # type: ignore[no-untyped-def]
        if name == "treatments":
            raise RuntimeError("disk full")
        return original(conn, name, **kw)

    original = load.merge
    monkeypatch.setattr(load, "merge", broken)
    with pytest.raises(RuntimeError):
        run_bundle(engine, write_bundle(tmp_path / "b"), KEY)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Patient)) == 0
        assert conn.execute(text("SELECT COUNT(*) FROM sites")).scalar() == 0
    monkeypatch.setattr(load, "merge", original)
    s = run_bundle(engine, write_bundle(tmp_path / "b"), KEY)
    assert s.status == "succeeded" and s.files["treatments"].loaded > 0
    assert not any("DROP INDEX" in x for x in statements)
    assert _index_names(engine) == declared
