"""What a hospital's real faults must not get through (second round): corrupt and ambiguous
archives, implausible manifests, stray quotes, loose dates and numbers; each ends with its exit
code, nothing silently blanked or swallowed, no identifier in stored text."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, text

from etl.bundle import Bundle, read_manifest
from etl.pipeline import run_bundle
from jobs.nightly import run_night
from registry.cli import cli
from registry.core.errors import BundleRefused
from registry.db.models import EtlRun, QuarantinedRow, Treatment
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle
from tests.etl.faults import start_paused

KEY = TEST_KEY.encode()


def _zip(
    folder: Path, target: Path, *, compress: int = zipfile.ZIP_STORED, extra: dict[str, bytes] | None = None
) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name: the case tested
        with zipfile.ZipFile(target, "w", compress) as zf:
            for p in sorted(folder.iterdir()):
                zf.write(p, p.name)
            for name, body in (extra or {}).items():
                zf.writestr(name, body)
    return target


def _bad_crc(path: Path) -> None:
    """Flip one byte inside patients.csv's stored data: its CRC no longer matches."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("patients.csv")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 40] ^= 0x20
    path.write_bytes(bytes(data))


def _encrypted(path: Path) -> None:
    """Set the 'encrypted' flag of treatments.csv in its local and central headers."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("treatments.csv")
    local = info.header_offset
    data[local + 6] |= 0x1
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        name_len = struct.unpack("<H", data[central + 28 : central + 30])[0]
        if data[central + 46 : central + 46 + name_len] == b"treatments.csv":
            data[central + 8] |= 0x1
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


def _forged_size(path: Path) -> None:
    """Make the central directory claim treatments.csv is 10 bytes: reading stops short and the
    CRC of what was read does not match."""
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    while central >= 0:
        name_len = struct.unpack("<H", data[central + 28 : central + 30])[0]
        if data[central + 46 : central + 46 + name_len] == b"treatments.csv":
            data[central + 24 : central + 28] = struct.pack("<I", 10)
            break
        central = data.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("case", "damage", "said"),
    [
        ("bad CRC", _bad_crc, "patients.csv: corrupt zip member"),
        ("encrypted member", _encrypted, "encrypted"),
        ("forged size", _forged_size, "treatments.csv: corrupt zip member"),
    ],
)
def test_a_corrupt_archive_is_a_refusal_with_one_line(
    case: str, damage, said: str, cli_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    bundle = _zip(write_bundle(tmp_path / "b"), tmp_path / "b.zip")
    damage(bundle)
    res = CliRunner().invoke(cli, ["etl", "run", str(bundle)])
    assert res.exit_code == 65, (case, res.output)
    assert "Traceback" not in res.output and said in res.output, (case, res.output)


@pytest.mark.parametrize("second", ["patients.csv", "PATIENTS.csv"])
def test_a_member_name_twice_is_refused(second: str, tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    bundle = _zip(folder, tmp_path / "b.zip", extra={second: b"patient_id,sex\nX,F\n"})
    with pytest.raises(BundleRefused, match="appear more than once"):
        Bundle(bundle)


def test_a_corrupt_zip_in_a_night_is_set_aside_and_the_good_bundle_loads(
    engine: Engine, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    write_bundle(inbox / "good")
    other = write_bundle(tmp_path / "other", manifest={"site_id": "SITE-B"})
    bad = _zip(other, inbox / "site-b.zip")
    _bad_crc(bad)
    night = run_night(engine, inbox, KEY, night=dt.date(2026, 7, 1))
    by_name = {b.path: b for b in night.bundles}
    assert by_name["good"].status == "succeeded" and by_name["site-b.zip"].status == "refused"
    assert night.exit_code == 65 and "corrupt zip member" in by_name["site-b.zip"].message
    reason = (inbox / "rejected" / "2026-07-01" / "site-b.zip.reason.txt").read_text()
    assert "corrupt zip member" in reason and not (inbox / "site-b.zip").exists()
    moved = inbox / "processed" / "2026-07-01" / "good"  # private to the registry's account
    assert moved.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in moved.iterdir()} == {0o600}
    rejected = inbox / "rejected" / "2026-07-01"
    assert {p.stat().st_mode & 0o777 for p in rejected.iterdir()} == {0o600}  # the zip and its reason
    again = run_night(engine, inbox, KEY, night=dt.date(2026, 7, 2))  # no poison pill
    assert again.bundles == [] and again.exit_code == 0


# ------------------------------------------------------------------ manifests
NOW = dt.datetime(2026, 7, 2, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        ({"data_cutoff": "9999-12-31"}, "'data_cutoff' 9999-12-31 is after the export day"),
        ({"data_cutoff": "2026-07-02"}, "'data_cutoff' 2026-07-02 is after the export day"),
        ({"data_cutoff": "1989-12-31"}, "'data_cutoff' 1989-12-31 is before 1990-01-01"),
        ({"exported_at": "9999-01-01T00:00:00+00:00", "data_cutoff": "2026-06-30"}, "'exported_at'"),
        ({"exported_at": "2026-07-02T13:30:00+00:00"}, "is in the future"),
        ({"data_cutoff": "2026-6-30"}, "'data_cutoff' must be an ISO date"),
    ],
)
def test_implausible_manifests_are_refused_naming_the_field(
    manifest: dict, field: str, tmp_path: Path
) -> None:  # type: ignore[type-arg]
    with Bundle(write_bundle(tmp_path / "b", manifest=manifest)) as b, pytest.raises(BundleRefused) as err:
        read_manifest(b, now=NOW)
    assert field in str(err.value.problems[0]), err.value.problems


def test_a_plausible_manifest_within_the_clock_skew_loads(tmp_path: Path) -> None:
    with Bundle(write_bundle(tmp_path / "b", manifest={"exported_at": "2026-07-02T12:45:00+00:00"})) as b:
        assert read_manifest(b, now=NOW).data_cutoff == dt.date(2026, 6, 30)


# ------------------------------------------------------------------ stray quotes
def _stray_quote(folder: Path) -> None:
    """`"Revlimid` on one line and `Thal"` two lines later: valid CSV quoting that makes one
    record of three lines (two records swallowed into a drug name)."""
    p = folder / "treatments.csv"
    header, *rows = p.read_text().splitlines()
    rows[1] = rows[1].replace("REVLIMID", '"Revlimid', 1)
    rows[3] = rows[3].replace("lenalidomide", 'Thal"', 1)
    p.write_text("\n".join([header, *rows]) + "\n")


def test_a_stray_quote_quarantines_the_joined_record_and_retires_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    run_bundle(engine, write_bundle(tmp_path / "n1"), KEY)
    second = write_bundle(tmp_path / "n2", manifest={"exported_at": "2026-07-02T02:00:00+00:00"})
    _stray_quote(second)
    s = run_bundle(engine, second, KEY)
    rx = s.files["treatments"]
    assert rx.quarantined == 1 and rx.retired == 0 and rx.lines == 8 and rx.read == 6
    assert any("8 physical lines read as 6 records" in w for w in s.warnings), s.warnings
    with engine.connect() as conn:
        (q,) = conn.execute(select(QuarantinedRow).where(QuarantinedRow.file == "treatments")).all()
        drugs = conn.execute(select(Treatment.drug_raw)).scalars().all()
        current = conn.execute(text("SELECT COUNT(*) FROM treatments WHERE is_current = TRUE")).scalar()
        ledger = conn.execute(select(EtlRun.warnings, EtlRun.message)).all()
    assert "stray_quote" in json.dumps(q.reasons) and q.row_number == 3
    stored = json.dumps([q.row_data, q.reasons, drugs, [list(r) for r in ledger]], default=str)
    for raw_id in ("MRN-0001", "R3", "R4"):  # the swallowed records' source ids
        assert f'"{raw_id}' not in stored and f",{raw_id}," not in stored, raw_id
    assert current == 8  # the record of the joined line stays as it was, nothing retired


# ------------------------------------------------------------------ a lost column
def test_a_full_export_that_lost_a_column_is_refused_unless_said_on_purpose(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    assert runner.invoke(cli, ["etl", "run", str(write_bundle(tmp_path / "n1"))]).exit_code == 0
    rows = base_rows()
    for r in rows["patients"]:
        r.pop("iss_stage", None)
    lost = write_bundle(tmp_path / "n2", rows, {"exported_at": "2026-07-02T02:00:00+00:00"})
    header = (lost / "patients.csv").read_text().splitlines()[0].split(",")
    body = [line.split(",") for line in (lost / "patients.csv").read_text().splitlines()[1:]]
    keep = [i for i, c in enumerate(header) if c != "iss_stage"]
    (lost / "patients.csv").write_text(
        "\n".join(",".join(r[i] for i in keep) for r in [header, *body]) + "\n"
    )
    res = runner.invoke(cli, ["etl", "run", str(lost)])
    assert res.exit_code == 65 and "patients.csv: column iss_stage" in res.output, res.output
    assert "--column-gone patients.iss_stage" in res.output
    res = runner.invoke(cli, ["etl", "run", str(lost), "--column-gone", "patients.iss_stage"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["etl", "runs", "--format", "json"])
    assert json.loads(res.output)[0]["columns_gone"] == ["patients.iss_stage"]


def test_an_optional_file_left_out_is_not_a_lost_column(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    assert runner.invoke(cli, ["etl", "run", str(write_bundle(tmp_path / "n1"))]).exit_code == 0
    again = tmp_path / "n2"
    shutil.copytree(tmp_path / "n1", again)
    manifest = json.loads((again / "manifest.json").read_text())
    (again / "manifest.json").write_text(json.dumps({**manifest, "exported_at": "2026-07-02T02:00:00+00:00"}))
    assert runner.invoke(cli, ["etl", "run", str(again)]).exit_code == 0


# ------------------------------------------------------------------ a lost lock (PostgreSQL)
def _cli(db_url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": db_url, "REGISTRY_PSEUDONYM_KEY": TEST_KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "registry", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.engines("postgresql")
def test_a_lost_lock_connection_aborts_the_run_and_the_next_loader_waits_for_it(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    older = write_bundle(tmp_path / "older")
    newer = write_bundle(tmp_path / "newer", manifest={"exported_at": "2026-07-02T02:00:00+00:00"})
    rows = base_rows()
    del rows["treatments"][7]  # the newer export dropped a record
    write_bundle(newer, rows, {"exported_at": "2026-07-02T02:00:00+00:00"})
    first = start_paused(db_url, ["etl", "run", str(older)], tmp_path / "paused", "commit", pause_seconds=4)
    key = zlib.crc32(b"mm-registry-load")
    with engine.connect() as conn:
        holder = conn.execute(
            text(
                # this test's database only: another suite on the same server holds the same lock
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                "AND objid = CAST(:k AS oid) "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"k": key},
        ).scalar()
        assert holder is not None
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": holder})  # idle_session_timeout, a cut
    second = _cli(db_url, "etl", "run", str(newer))  # gets past the lost lock, waits for the work
    _, err1 = first.communicate(timeout=120)
    _, err2 = second.communicate(timeout=120)
    assert first.returncode == 75 and "writer lock was lost" in err1 and "Traceback" not in err1, err1
    assert second.returncode == 0, err2
    with engine.connect() as conn:
        runs = conn.execute(select(EtlRun.run_id, EtlRun.status).order_by(EtlRun.run_id)).all()
        current = conn.execute(text("SELECT COUNT(*) FROM treatments WHERE is_current")).scalar()
    assert [s for _, s in runs] == ["failed", "succeeded"]
    assert current == 7  # as if the older load had never run: the newer export's records only


def test_json_on_failure_too(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = write_bundle(tmp_path / "b", manifest={"data_cutoff": "9999-12-31"})
    res = CliRunner().invoke(cli, ["etl", "run", str(bundle), "--format", "json"])
    assert res.exit_code == 65
    data = json.loads(res.stdout)
    assert data["status"] == "failed" and data["exit_code"] == 65 and "data_cutoff" in data["message"]


def test_a_kill_after_the_commit_leaves_the_run_recorded_as_succeeded(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    """The final status commits with the data: killed after the commit (before the derivation),
    the run stays succeeded, and the next run derives what it flagged."""
    proc = start_paused(
        db_url, ["etl", "run", str(write_bundle(tmp_path / "b"))], tmp_path / "paused", "derive"
    )
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    again = write_bundle(tmp_path / "b2", manifest={"exported_at": "2026-07-02T02:00:00+00:00"})
    assert run_bundle(engine, again, KEY).status == "succeeded"
    with engine.connect() as conn:
        statuses = conn.execute(select(EtlRun.status).order_by(EtlRun.run_id)).scalars().all()
        pending = conn.execute(text("SELECT COUNT(*) FROM patients WHERE needs_derivation")).scalar()
    assert statuses == ["succeeded", "succeeded"] and pending == 0


def test_a_worker_whose_parent_died_before_it_ran_ends_at_once() -> None:
    """A worker first scheduled after its parent died (a loaded machine: two workers lived on
    as orphans once) has been re-parented already; it is told its parent's pid from before the
    fork, sees the difference and ends, instead of taking the reaper for its parent."""
    from registry.core.parallel import end_with_parent

    child = os.fork()
    if child == 0:  # the worker, told of a parent it no longer has
        try:
            end_with_parent(os.getppid() + 1_000_000)
        finally:
            os._exit(3)  # reached only if it did not end
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_pool_workers_end_with_the_process_that_forked_them(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from registry.core.parallel import forked_pool\n"
        "with forked_pool(2) as pool:\n"
        "    busy = pool.map_async(time.sleep, [60, 60])  # workers in the middle of a task\n"
        "    pids = [p.pid for p in pool._pool]\n"
        "    print(' '.join(map(str, pids)), flush=True)\n"
        "    time.sleep(60)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2
    proc.kill()  # SIGKILL: the pool's shutdown never runs
    proc.wait()
    proc.stdout.close()  # (the workers hold the pipe too: reading it to the end would wait for them)
    deadline = time.time() + 10
    alive = pids
    while alive and time.time() < deadline:
        time.sleep(0.1)
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
    assert alive == [], "orphaned workers lived on"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except (OSError, IndexError):
        return "Z"
