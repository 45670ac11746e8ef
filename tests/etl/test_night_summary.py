"""A night summary an operator can trust, over four nights on both engines: gross counts by
direction, a same-day re-run beside the first record, a re-ordered / re-encoded / re-quoted
delivery that changes nobody and re-derives nobody, and a fatal data-quality failure that
fails the night and is named everywhere."""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from etl.synth import write_bundle
from jobs.night_facts import Snapshot, gross_changes
from jobs.nightly import run_night
from registry.cli import cli
from registry.cli.nightly import night_line
from tests.conftest import TEST_KEY
from tests.etl.bundles import read_csv, write_csv

KEY = TEST_KEY.encode()
FILES = ("patients", "transplants", "treatments", "disease_events", "follow_up")
GROSS = (
    "patients_added", "patients_changed", "patients_retired", "deaths_added", "deaths_removed",
    "relapses_added", "relapses_removed", "second_lines_added", "second_lines_removed",
)  # fmt: skip


def _later(bundle: Path, hours: int) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    exported = dt.datetime.fromisoformat(manifest["exported_at"]) + dt.timedelta(hours=hours)
    manifest["exported_at"] = exported.isoformat()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def _death_and_a_dead_patient_dropped(src: Path, dst: Path) -> None:
    """The next export: one alive patient died; a patient who had died is no longer sent."""
    shutil.copytree(src, dst)
    fields, follow_up = read_csv(dst / "follow_up.csv")
    died = next(r for r in follow_up if r["vital_status"] == "alive")["patient_id"]
    dropped = next(r for r in follow_up if r["vital_status"] == "dead")["patient_id"]
    for r in follow_up:
        if r["patient_id"] == died:
            r.update(vital_status="dead", death_date=r["last_contact_date"], cause_of_death="myeloma")
    write_csv(dst / "follow_up.csv", fields, [r for r in follow_up if r["patient_id"] != dropped])
    for name in FILES[:-1]:
        fields, rows = read_csv(dst / f"{name}.csv")
        write_csv(dst / f"{name}.csv", fields, [r for r in rows if r["patient_id"] != dropped])
    _later(dst, 24)


def _reordered(src: Path, dst: Path) -> None:
    """The same values delivered again: rows shuffled, CRLF line endings, every field quoted in
    two files (the values, and so every record, identical)."""
    shutil.copytree(src, dst)
    rng = random.Random(7)
    for name in FILES:
        fields, rows = read_csv(dst / f"{name}.csv")
        rng.shuffle(rows)
        quoting = csv.QUOTE_ALL if name in ("patients", "treatments") else csv.QUOTE_MINIMAL
        with (dst / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\r\n", quoting=quoting)
            w.writeheader()
            w.writerows(rows)
    _later(dst, 24)


def _follow_up_missing(src: Path, dst: Path, share: float) -> int:
    """The next export without the follow-up rows of a share of the patients."""
    shutil.copytree(src, dst)
    fields, rows = read_csv(dst / "follow_up.csv")
    gone = max(1, int(len(rows) * share))
    write_csv(dst / "follow_up.csv", fields, rows[gone:])
    _later(dst, 24)
    return gone


def _nothing_negative(changes: dict[str, Any]) -> None:
    counts = {k: v for k, v in changes.items() if isinstance(v, int)}
    assert counts and all(v >= 0 for v in counts.values()), counts


def test_four_nights_gross_counts_reruns_reorders_and_a_fatal_check(engine: Engine, tmp_path: Path) -> None:
    inbox, reports, source = tmp_path / "inbox", tmp_path / "reports", tmp_path / "source"
    inbox.mkdir()
    write_bundle(source / "n1", patients=150, seed=5, labs=False)
    shutil.copytree(source / "n1", inbox / "n1")
    first = run_night(engine, inbox, KEY, reports_dir=reports, night=dt.date(2026, 7, 1))
    assert first.exit_code == 0 and first.changes["patients_added"] == 150
    assert first.changes["patients_changed"] == 0 and first.changes["patients_retired"] == 0
    _nothing_negative(first.changes)

    # night 2: a death added and a dead patient retired: 1 and 1, not "+0"
    _death_and_a_dead_patient_dropped(source / "n1", source / "n2")
    shutil.copytree(source / "n2", inbox / "n2")
    second = run_night(engine, inbox, KEY, reports_dir=reports, night=dt.date(2026, 7, 2))
    c = second.changes
    assert second.exit_code == 0, second.problems
    assert (c["patients_added"], c["patients_retired"]) == (0, 1)
    assert (c["deaths_added"], c["deaths_removed"]) == (1, 1)
    assert 1 <= c["patients_changed"] <= 3  # the patient who died (and what it derives)
    _nothing_negative(c)
    night2 = json.loads((reports / "2026-07-02" / "changes.json").read_text())
    assert night2["changes"]["deaths_added"] == 1 and night2["night_run"] == 1
    words = re.sub(r"<[^>]+>", "", (reports / "2026-07-02" / "lenalidomide-relapse.html").read_text())
    assert "deaths added 1" in words and "deaths removed 1" in words and "patients retired 1" in words

    # the same night run again: its own record beside the first, which stays
    rerun = run_night(engine, inbox, KEY, reports_dir=reports, night=dt.date(2026, 7, 2))
    assert rerun.night_run == 2 and rerun.changes["patients_changed"] == 0
    assert json.loads((reports / "2026-07-02" / "changes.json").read_text()) == night2
    assert json.loads((reports / "2026-07-02" / "changes-2.json").read_text())["night_run"] == 2

    # night 3: the same export re-ordered, re-encoded and re-quoted: nobody changed, nobody derived
    _reordered(source / "n2", source / "n3")
    shutil.copytree(source / "n3", inbox / "n3")
    events: list[tuple[str, dict[str, Any]]] = []
    night3 = dt.date(2026, 7, 3)
    third = run_night(
        engine, inbox, KEY, reports_dir=reports, night=night3, log=lambda e, f: events.append((e, f))
    )
    assert third.exit_code == 0 and [b.status for b in third.bundles] == ["succeeded"]
    assert {k: third.changes[k] for k in GROSS} == dict.fromkeys(GROSS, 0)
    assert dict(events)["derived"]["patients"] == 0

    # night 4: 5% of the patients without their follow-up row: the fatal check fails the night
    gone = _follow_up_missing(source / "n3", source / "n4", 0.05)
    shutil.copytree(source / "n4", inbox / "n4")
    fourth = run_night(engine, inbox, KEY, reports_dir=reports, night=dt.date(2026, 7, 4))
    assert fourth.exit_code == 65 and fourth.fatal_checks == ["followup_missing"]
    assert any("followup_missing" in p for p in fourth.problems)
    record = json.loads((reports / "2026-07-04" / "changes.json").read_text())
    assert record["fatal_checks"] == ["followup_missing"] and record["exit_code"] == 65
    assert record["changes"]["patients_changed"] >= gone
    for page in ("lenalidomide-relapse.html", "transplant-outcomes.html"):
        text = (reports / "2026-07-04" / page).read_text()
        top = text[: text.index("<h2")]
        assert "followup_missing" in top, page
    assert "FATAL data-quality checks failed: followup_missing" in night_line(fourth.to_json())


def test_the_summary_line_names_quarantined_rows_per_file_and_exits_65_on_a_fatal_check(
    sqlite_cli_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_bundle(tmp_path / "full", patients=120, seed=3, labs=False)
    _follow_up_missing(tmp_path / "full", inbox / "b", 0.05)
    fields, rows = read_csv(inbox / "b" / "treatments.csv")
    rows[0]["start_date"] = "not a date"
    write_csv(inbox / "b" / "treatments.csv", fields, rows)
    res = CliRunner().invoke(cli, ["nightly", "--inbox", str(inbox)])
    assert res.exit_code == 65, res.output
    first, *rest = res.output.strip().splitlines()
    assert "quarantined rows: treatments 1" in first and "followup_missing" in first
    assert rest == ["  fatal data-quality check failed: followup_missing"]


def _snap(keys: list[int], dead: list[bool], relapse: list[int], digest: list[int]) -> Snapshot:
    order = np.argsort(np.array(keys, dtype=np.uint64))
    return Snapshot(
        np.array(keys, dtype=np.uint64)[order],
        np.array(dead)[order],
        np.array(relapse, dtype=np.int64)[order],
        np.full(len(keys), -1, dtype=np.int64),
        np.array(digest, dtype=np.uint64)[order],
    )


def test_gross_changes_count_each_direction_apart() -> None:
    # 1 dies, 2 retired (was dead), 3 new (dead), 4 relapse withdrawn, 5 relapse added, 6 re-derived alike
    no = False
    before = _snap([1, 2, 4, 5, 6], [no, True, no, no, no], [-1, 10, 20, -1, -1], [11, 12, 14, 15, 16])
    after = _snap([1, 3, 4, 5, 6], [True, True, no, no, no], [-1, -1, -1, 30, -1], [11, 13, 99, 98, 16])
    c = gross_changes(before, after, touched=np.array([1], dtype=np.uint64))
    assert c == {
        "patients_added": 1, "patients_changed": 3, "patients_retired": 1,
        "deaths_added": 2, "deaths_removed": 1,
        "relapses_added": 1, "relapses_removed": 2,
        "second_lines_added": 0, "second_lines_removed": 0,
    }  # fmt: skip


def test_a_night_that_died_after_a_bundle_is_finished_by_the_next_run(engine: Engine, tmp_path: Path) -> None:
    """The re-run reports what the whole night changed, against the last completed night."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_bundle(inbox / "a", patients=60, seed=2, site="SITE-A", labs=False)
    write_bundle(inbox / "b", patients=40, seed=3, site="SITE-B", labs=False)

    def die(event: str, _fields: dict[str, Any]) -> None:
        if event == "bundle":
            raise RuntimeError("the machine went down")

    with pytest.raises(RuntimeError, match="went down"):
        run_night(engine, inbox, KEY, night=dt.date(2026, 7, 1), log=die)
    assert sorted(p.name for p in inbox.iterdir() if not p.name.startswith(".")) == ["b", "processed"]
    again = run_night(engine, inbox, KEY, night=dt.date(2026, 7, 1))
    c = again.changes
    assert c["bundles_taken"] == 2 and [b.path for b in again.bundles] == ["a", "b"]
    assert c["patients_added"] == 100 and c["deaths_added"] > 0
    assert not (inbox / ".nightly-state.npz").exists()  # completed: the next night starts afresh
    third = run_night(engine, inbox, KEY, night=dt.date(2026, 7, 2))
    assert third.changes["bundles_taken"] == 0 and third.changes["patients_added"] == 0
