"""`registry db rekey`: with both keys and the site's current full export, every pseudonym is
replaced by the new key's (retired records get an unlinkable one), the quarantine and change log
follow, the derivations are rebuilt, and the next load with the new key finds the same patients
— on both engines. A wrong current key, a missing new key or a missing --yes change nothing."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import create_engine, func, select

from registry.cli import cli
from registry.db.keyprint import fingerprint, recorded_fingerprint
from registry.db.models import (
    Base,
    LabResult,
    LineOfTherapy,
    Patient,
    QuarantinedRow,
    Treatment,
    pseudonym_columns,
)
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle

NEW_KEY = "a-new-deployment-key-0123456789abcdef"


def pseudonym(key: str, namespace: str, source_id: str) -> str:
    return hmac.new(key.encode(), f"TEST-SITE:{namespace}:{source_id}".encode(), hashlib.sha256).hexdigest()[
        :32
    ]


def with_labs(rows: dict[str, list[dict[str, str]]]) -> dict[str, list[dict[str, str]]]:
    """The bundle with a laboratory series for each patient (a table added after re-keying was
    written, and once left out of it)."""
    patients = [r["patient_id"] for r in rows["patients"]]
    rows["labs"] = [
        {
            "lab_id": f"{pid}-L{i}",
            "patient_id": pid,
            "sample_date": day,
            "test": "serum_m_protein",
            "value": value,
            "unit": "g/dL",
        }
        for pid in patients
        for i, (day, value) in enumerate((("2019-01-05", "2.1"), ("2019-09-01", "0.4")))
    ]
    return rows


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args), env=env)
    return res.exit_code, res.output


def test_rekey_replaces_every_pseudonym_and_the_next_load_finds_the_same_patients(
    cli_env,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    engine = create_engine(cli_env["REGISTRY_DATABASE_URL"])
    first = with_labs(base_rows())
    first["treatments"].append(
        {"treatment_id": "BAD", "patient_id": "MRN-0001", "drug": "Velcade", "start_date": "2026-02-30"}
    )  # quarantined, its ids pseudonymised
    assert run("etl", "run", str(write_bundle(tmp_path / "n1", first)))[0] == 0
    second = with_labs(copy.deepcopy(base_rows()))  # MRN-0003 no longer sent: retired
    for name in second:
        second[name] = [r for r in second[name] if r.get("patient_id") != "MRN-0003"]
    night2 = write_bundle(tmp_path / "n2", second, {"exported_at": "2026-07-02T02:00:00+00:00"})
    assert run("etl", "run", str(night2))[0] == 0
    with engine.connect() as conn:
        before = {
            "patients": conn.execute(select(func.count()).select_from(Patient)).scalar(),
            "treatments": conn.execute(select(func.count()).select_from(Treatment)).scalar(),
            "lines": conn.execute(select(func.count()).select_from(LineOfTherapy)).scalar(),
        }
        assert conn.execute(select(func.count()).select_from(LabResult)).scalar() == 6
        old_retired = pseudonym(TEST_KEY, "patient", "MRN-0003")
        assert (
            conn.execute(select(Patient.is_current).where(Patient.patient_key == old_retired)).scalar()
            is False
        )

    # refusals change nothing: no --yes, no new key, a wrong current key
    new_env = {"REGISTRY_NEW_PSEUDONYM_KEY": NEW_KEY}
    assert run("db", "rekey", str(night2), env=new_env)[0] == 64
    assert run("db", "rekey", str(night2), "--yes")[0] == 78
    code, out = run(
        "db", "rekey", str(night2), "--yes", env={**new_env, "REGISTRY_PSEUDONYM_KEY": "wrong-key-000000"}
    )
    assert code == 78 and "not the one this registry's pseudonyms were made with" in out

    code, out = run("db", "rekey", str(night2), "--yes", env=new_env)
    assert code == 0, out
    with engine.connect() as conn:
        keys = set(conn.execute(select(Patient.patient_key)).scalars())
        assert (
            pseudonym(NEW_KEY, "patient", "MRN-0001") in keys
            and pseudonym(NEW_KEY, "patient", "MRN-0002") in keys
        )
        assert not keys & {pseudonym(TEST_KEY, "patient", p) for p in ("MRN-0001", "MRN-0002", "MRN-0003")}
        retired = hmac.new(NEW_KEY.encode(), b"rekeyed:" + old_retired.encode(), hashlib.sha256).hexdigest()[
            :32
        ]
        assert (
            conn.execute(select(Patient.is_current).where(Patient.patient_key == retired)).scalar() is False
        )
        assert conn.execute(select(func.count()).select_from(Patient)).scalar() == before["patients"]
        assert conn.execute(select(func.count()).select_from(Treatment)).scalar() == before["treatments"]
        assert conn.execute(select(func.count()).select_from(LineOfTherapy)).scalar() == before["lines"]
        assert recorded_fingerprint(conn) == fingerprint(NEW_KEY.encode())
        # no table keeps a pseudonym of the old key, in any of its pseudonym columns
        old = {
            pseudonym(TEST_KEY, ns, i)
            for rows in first.values()
            for r in rows
            for col, ns in (
                ("patient_id", "patient"),
                ("transplant_id", "transplant"),
                ("treatment_id", "treatment"),
                ("event_id", "event"),
                ("lab_id", "lab"),
            )
            if (i := r.get(col))
        }
        for table in Base.metadata.sorted_tables:
            for col in pseudonym_columns(table):
                kept = set(conn.execute(select(table.c[col])).scalars()) & old
                assert not kept, (table.name, col, len(kept))
        stored = conn.execute(select(QuarantinedRow.row_data)).scalars().all()
        assert any(r.get("patient_id") == pseudonym(NEW_KEY, "patient", "MRN-0001") for r in stored)
        assert not any(pseudonym(TEST_KEY, "patient", "MRN-0001") in str(r) for r in stored)

    # the old key is now refused; the new key's next full export changes nothing
    night3 = write_bundle(tmp_path / "n3", second, {"exported_at": "2026-07-03T02:00:00+00:00"})
    assert run("etl", "run", str(night3))[0] == 78
    code, out = run("etl", "run", str(night3), "--format", "json", env={"REGISTRY_PSEUDONYM_KEY": NEW_KEY})
    assert code == 0, out
    files = json.loads(out)["files"]
    assert all(f["retired"] == 0 for f in files.values()), files  # nobody looks new or gone
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Patient)).scalar() == before["patients"]
        assert conn.execute(select(func.count()).select_from(Patient).where(Patient.is_current)).scalar() == 2
    engine.dispose()
