"""`registry nightly` over three nights on both engines: each bundle taken once and moved, refused
ones set aside with their reason, a report set and a correct record of what changed per night,
old nights dropped, exit codes a scheduler can act on."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, select

from etl.synth import write_bundle
from jobs.nightly import inbox_lock, run_night
from registry.cli import cli
from registry.db.models import EtlRun
from tests.conftest import TEST_KEY
from tests.etl.bundles import read_csv, write_csv
from tests.etl.faults import start_paused

KEY = TEST_KEY.encode()
NIGHT1, NIGHT2, NIGHT3 = dt.date(2026, 7, 1), dt.date(2026, 7, 2), dt.date(2026, 7, 3)


def _next_export(src: Path, dst: Path, hours: int) -> tuple[str, str]:
    """The next night's full export: one alive patient has died, another is no longer sent.
    Returns (the patient who died, the patient dropped) as source ids."""
    shutil.copytree(src, dst)
    fields, follow_up = read_csv(dst / "follow_up.csv")
    alive = [r for r in follow_up if r["vital_status"] == "alive"]
    died, dropped = alive[0]["patient_id"], alive[1]["patient_id"]
    for r in follow_up:
        if r["patient_id"] == died:
            r.update(vital_status="dead", death_date=r["last_contact_date"], cause_of_death="myeloma")
    write_csv(dst / "follow_up.csv", fields, [r for r in follow_up if r["patient_id"] != dropped])
    for name in ("patients", "transplants", "treatments", "disease_events"):
        fields, rows = read_csv(dst / f"{name}.csv")
        write_csv(dst / f"{name}.csv", fields, [r for r in rows if r["patient_id"] != dropped])
    manifest = json.loads((dst / "manifest.json").read_text())
    exported = dt.datetime.fromisoformat(manifest["exported_at"]) + dt.timedelta(hours=hours)
    manifest["exported_at"] = exported.isoformat()
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return died, dropped


def test_three_nights_move_report_and_record_what_changed(engine: Engine, tmp_path: Path) -> None:
    inbox, reports, source = tmp_path / "inbox", tmp_path / "reports", tmp_path / "source"
    inbox.mkdir()
    write_bundle(source / "night1", patients=150, seed=5, labs=False)
    shutil.copytree(source / "night1", inbox / "site-night1")

    first = run_night(engine, inbox, KEY, reports_dir=reports, keep_nights=1, night=NIGHT1)
    assert first.exit_code == 0 and [b.status for b in first.bundles] == ["succeeded"]
    assert (inbox / "processed" / "2026-07-01" / "site-night1").is_dir()
    assert not (inbox / "site-night1").exists()
    assert first.changes["patients_added"] == 150 and first.changes["bundles_taken"] == 1
    night_folder = reports / "2026-07-01"
    assert {p.name for p in night_folder.iterdir()} == {
        "lenalidomide-relapse.html",
        "lenalidomide-relapse.json",
        "transplant-outcomes.html",
        "transplant-outcomes.json",
        "data-quality.html",
        "changes.json",
    }
    outcomes = json.loads((night_folder / "transplant-outcomes.json").read_text())
    assert set(outcomes["endpoints"]) == {"os", "pfs", "relapse", "nrm"} and outcomes["n"] > 0

    _next_export(source / "night1", source / "night2", hours=24)
    shutil.copytree(source / "night2", inbox / "site-night2")
    second = run_night(engine, inbox, KEY, reports_dir=reports, keep_nights=1, night=NIGHT2)
    assert second.exit_code == 0
    c = second.changes
    assert (c["patients_added"], c["patients_retired"], c["deaths_added"]) == (0, 1, 1)
    assert c["patients_changed"] >= 1  # the patient who died, re-derived
    saved = json.loads((reports / "2026-07-02" / "changes.json").read_text())
    assert saved["changes"]["deaths_added"] == 1 and saved["bundles"][0]["retired"] > 0
    assert not night_folder.exists()  # --keep-nights 1: only the last night stays
    assert set(c["studies"]["lenalidomide-relapse"]["before"]) == {"G1", "G2", "G3", "G4"}
    dq = c["data_quality"]  # the checks ran each night; the second night compares with the first
    assert dq["run_id"] == first.changes["data_quality"]["run_id"] + 1
    assert set(dq["new"]) | set(dq["resolved"]) | set(dq["persisting"]) <= set(dq["failed"]) | set(
        dq["resolved"]
    )
    assert "Data quality" in (reports / "2026-07-02" / "data-quality.html").read_text()
    page = (reports / "2026-07-02" / "lenalidomide-relapse.html").read_text()
    words = re.sub(r"<[^>]+>", "", page)
    assert "Since the last night" in words and "patients retired 1" in words and "deaths added 1" in words

    # night 3 follows night 2: another death, another patient no longer sent
    _next_export(source / "night2", inbox / "site-night3", hours=24)
    third = run_night(engine, inbox, KEY, reports_dir=reports, keep_nights=2, night=NIGHT3)
    assert third.exit_code == 0 and [b.status for b in third.bundles] == ["succeeded"]
    c3 = third.changes
    assert (c3["patients_added"], c3["patients_retired"], c3["deaths_added"]) == (0, 1, 1)
    assert c3["bundles_taken"] == 1 and (inbox / "processed" / "2026-07-03" / "site-night3").is_dir()
    study = "lenalidomide-relapse"
    assert c3["studies"][study]["before"] == c["studies"][study]["after"]  # nights chain up
    assert c3["data_quality"]["run_id"] == dq["run_id"] + 1
    assert {p.name for p in reports.iterdir()} == {"2026-07-02", "2026-07-03"}  # --keep-nights 2
    with engine.connect() as conn:
        runs = conn.execute(select(EtlRun.status).order_by(EtlRun.run_id)).scalars().all()
    assert runs == ["succeeded"] * 3


def test_a_stale_bundle_beside_a_newer_one_is_refused(engine: Engine, tmp_path: Path) -> None:
    inbox, source = tmp_path / "inbox", tmp_path / "source"
    inbox.mkdir()
    write_bundle(source / "old", patients=50, seed=1, labs=False)
    _next_export(source / "old", source / "new", hours=24)
    shutil.copytree(source / "new", inbox / "new")
    assert run_night(engine, inbox, KEY, night=NIGHT1).exit_code == 0
    shutil.copytree(source / "old", inbox / "old")  # delivered late: older than what is loaded
    late = run_night(engine, inbox, KEY, night=NIGHT2)
    assert late.exit_code == 65 and late.bundles[0].status == "refused"
    assert "older than the last bundle" in (inbox / "rejected" / "2026-07-02" / "old.reason.txt").read_text()


def test_refused_bundles_are_set_aside_with_their_reason_and_the_good_one_loads(
    engine: Engine, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_bundle(inbox / "good", patients=60, seed=2, labs=False)
    write_bundle(inbox / "broken", patients=60, seed=3, site="SITE-B", labs=False)
    (inbox / "broken" / "patients.csv").unlink()
    result = run_night(engine, inbox, KEY, night=NIGHT1)
    assert result.exit_code == 65
    by_name = {b.path: b for b in result.bundles}
    assert by_name["good"].status == "succeeded" and by_name["broken"].status == "refused"
    reason = (inbox / "rejected" / "2026-07-01" / "broken.reason.txt").read_text()
    assert "patients.csv: missing" in reason

    # the same good bundle delivered again: already loaded, set aside, never loaded twice
    shutil.copytree(inbox / "processed" / "2026-07-01" / "good", inbox / "good-again")
    again = run_night(engine, inbox, KEY, night=NIGHT2)
    assert [b.status for b in again.bundles] == ["unchanged"] and again.exit_code == 65
    assert "already loaded" in (inbox / "rejected" / "2026-07-02" / "good-again.reason.txt").read_text()
    assert again.changes["patients_added"] == 0


def test_cli_json_summary_and_the_lock(sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_bundle(inbox / "b", patients=40, seed=9, labs=False)
    runner = CliRunner()
    with inbox_lock(inbox):
        res = runner.invoke(cli, ["nightly", "--inbox", str(inbox)])
        assert res.exit_code == 75 and "another nightly run" in res.output
    res = runner.invoke(cli, ["nightly", "--inbox", str(inbox), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data) >= {"bundles", "changes", "reports"}
    assert set(data["bundles"][0]) >= {
        "path",
        "site_id",
        "status",
        "read",
        "loaded",
        "quarantined",
        "retired",
    }
    assert set(data["changes"]) >= {
        "patients_added",
        "patients_changed",
        "patients_retired",
        "deaths_added",
        "relapses_added",
    }
    res = runner.invoke(cli, ["nightly", "--inbox", str(tmp_path / "nowhere")])
    assert res.exit_code == 66


def _nightly_process(db_url: str, inbox: Path, extra_env: dict[str, str]) -> subprocess.Popen[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": db_url, "REGISTRY_PSEUDONYM_KEY": TEST_KEY, **extra_env}
    return subprocess.Popen(
        [sys.executable, "-m", "registry.cli", "nightly", "--inbox", str(inbox)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_night_killed_mid_load_loses_nothing_and_loads_nothing_twice(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_bundle(inbox / "b", patients=80, seed=4, labs=False)
    proc = start_paused(db_url, ["nightly", "--inbox", str(inbox)], tmp_path / "paused")  # rows written
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert (inbox / "b").is_dir()  # untouched, still waiting
    again = run_night(engine, inbox, KEY, night=NIGHT1)  # the re-run takes it, once
    assert [b.status for b in again.bundles] == ["succeeded"] and again.changes["patients_added"] == 80
    with engine.connect() as conn:
        statuses = [s for (s,) in conn.execute(select(EtlRun.status).order_by(EtlRun.run_id))]
    assert statuses == ["killed", "succeeded"]


def test_under_cron_it_prints_one_summary_line_and_nothing_else(sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_bundle(inbox / "b", patients=40, seed=6, labs=False)
    proc = _nightly_process(sqlite_cli_env["REGISTRY_DATABASE_URL"], inbox, {})  # no TTY, no stdin
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err == "" and len(out.strip().splitlines()) == 1 and out.startswith("night ")


def test_a_report_that_cannot_be_released_is_refused_not_written(engine: Engine, tmp_path: Path) -> None:
    inbox, reports = tmp_path / "inbox", tmp_path / "reports"
    inbox.mkdir()
    write_bundle(inbox / "site-night1", patients=60, seed=3, labs=False)  # a cohort of a few dozen patients
    night = run_night(engine, inbox, KEY, reports_dir=reports, night=NIGHT1, min_cell=500)
    assert [b.status for b in night.bundles] == ["succeeded"]
    reason = night.reports_refused["lenalidomide-relapse"]
    assert "fewer patients than the release threshold (500)" in reason
    assert night.exit_code == 65 and night.to_json()["reports_refused"] == night.reports_refused
    folder = reports / "2026-07-01"
    assert not (folder / "lenalidomide-relapse.html").exists()
    assert (folder / "lenalidomide-relapse.refused.txt").read_text().strip() == reason


def test_the_night_record_shows_no_count_below_the_threshold(engine: Engine, tmp_path: Path) -> None:
    inbox, reports = tmp_path / "inbox", tmp_path / "reports"
    inbox.mkdir()
    write_bundle(inbox / "site-night1", patients=1000, seed=4, labs=False)
    night = run_night(engine, inbox, KEY, reports_dir=reports, night=NIGHT1, min_cell=50)
    saved = json.loads((reports / "2026-07-01" / "changes.json").read_text())

    def small(value: object, key: str = "") -> list[str]:
        if isinstance(value, dict):
            return [s for k, v in value.items() for s in small(v, k)]
        if isinstance(value, list):
            return [s for v in value for s in small(v, key)]
        counts = key not in ("bundles_taken", "bundles_refused", "run_id", "night_run", "exit_code")
        if counts and isinstance(value, int) and not isinstance(value, bool) and 0 < value < 50:
            return [f"{key}={value}"]
        return []

    assert small(saved) == [] == small(night.to_json())
    groups = saved["changes"]["studies"]["lenalidomide-relapse"]["after"]
    assert groups is not None and all(g["n"] is None or g["n"] >= 50 for g in groups.values())
