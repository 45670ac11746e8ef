"""The pseudonym key's fingerprint: the first load records it; a load, a night or a doctor with
another key is refused with 78, naming neither key, and the registry is exactly as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from etl.pipeline import run_bundle
from jobs.nightly import run_night
from registry.cli import cli
from registry.core.errors import EXIT_CONFIG, ConfigError
from registry.db.keyprint import fingerprint
from registry.db.models import EtlRun, KeyFingerprint
from tests.conftest import TEST_KEY
from tests.etl.bundles import write_bundle
from tests.etl.test_load import snapshot

KEY = TEST_KEY.encode()
OTHER = b"another-deployment-key-of-enough-length"


def test_the_first_load_records_the_fingerprint_and_another_key_is_refused(
    engine: Engine, tmp_path: Path
) -> None:
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(KeyFingerprint)).scalar() == 0
    first = run_bundle(engine, write_bundle(tmp_path / "a"), KEY)
    with engine.connect() as conn:
        (row,) = conn.execute(select(KeyFingerprint)).all()
    assert row.fingerprint == fingerprint(KEY) != fingerprint(OTHER) and row.run_id == first.run_id
    assert TEST_KEY not in row.fingerprint

    before = snapshot(engine)
    with engine.connect() as conn:
        runs = conn.execute(select(func.count()).select_from(EtlRun)).scalar()
    newer = write_bundle(tmp_path / "b", manifest={"exported_at": "2026-07-02T02:00:00+00:00"})
    with pytest.raises(ConfigError, match="not the one this registry") as err:
        run_bundle(engine, newer, OTHER)
    assert TEST_KEY not in str(err.value) and OTHER.decode() not in str(err.value)
    assert snapshot(engine) == before  # nothing retired, nothing re-pseudonymised
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(EtlRun)).scalar() == runs

    inbox = tmp_path / "inbox"
    write_bundle(inbox / "night", manifest={"exported_at": "2026-07-03T02:00:00+00:00"})
    with pytest.raises(ConfigError):
        run_night(engine, inbox, OTHER)
    assert (inbox / "night").is_dir() and not (inbox / "rejected").exists()  # the bundle is not blamed
    assert snapshot(engine) == before

    assert run_bundle(engine, newer, KEY).status == "succeeded"  # the right key loads as before


def test_cli_and_doctor_say_so_with_exit_78(sqlite_cli_env, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    res = runner.invoke(cli, ["doctor"])
    assert "none yet (recorded by the first load)" in res.output
    assert runner.invoke(cli, ["etl", "run", str(write_bundle(tmp_path / "a"))]).exit_code == 0
    res = runner.invoke(cli, ["doctor"])
    assert res.exit_code == 0 and "matches the key" in res.output
    monkeypatch.setenv("REGISTRY_PSEUDONYM_KEY", OTHER.decode())
    newer = write_bundle(tmp_path / "b", manifest={"exported_at": "2026-07-02T02:00:00+00:00"})
    res = runner.invoke(cli, ["etl", "run", str(newer)])
    assert res.exit_code == EXIT_CONFIG and "Traceback" not in res.output
    assert "not the one this registry" in res.output and OTHER.decode() not in res.output
    assert runner.invoke(cli, ["etl", "validate", str(newer)]).exit_code == EXIT_CONFIG  # validation too
    res = runner.invoke(cli, ["doctor"])
    assert res.exit_code == EXIT_CONFIG and "DIFFERENT" in res.output
