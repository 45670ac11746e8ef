"""One patient's audit trail (``registry patient history``): per run, which of the patient's
loaded records were added, changed (and which columns), reinstated or retired — pseudonymous
record keys and column names only, never values or identifiers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select

from registry.contract.files import input_file
from registry.core.errors import NotFound
from registry.db.models import PSEUDONYM_CHARS, Base, EtlRun, Patient, RecordChange

# the action of a site's first load: one change-log row a patient and file standing for its
# records there (etl.load.log_first_load); listed record by record
LOADED = "loaded"


def resolve_patient_key(conn: Connection, patient_key: str) -> str:
    """The full pseudonym for ``patient_key`` or a unique prefix of it; ``NotFound`` otherwise.
    A longer key is one of 256 bits, as releases before migration 0021 showed them (in reports,
    exports, notes): its first ``PSEUDONYM_CHARS`` characters are the patient's key now."""
    given = patient_key
    if len(patient_key) > PSEUDONYM_CHARS:
        patient_key = patient_key[:PSEUDONYM_CHARS]
    if len(patient_key) == PSEUDONYM_CHARS:
        keys = [patient_key]
    else:
        like = select(Patient.patient_key).where(Patient.patient_key.like(patient_key + "%")).limit(2)
        keys = list(conn.execute(like).scalars().all())
        if len(keys) != 1:
            raise NotFound(
                f"{'no' if not keys else 'more than one'} patient matches {patient_key!r}",
                hint="give more characters of the key",
            )
    found = conn.execute(select(Patient.patient_key).where(Patient.patient_key == keys[0])).first()
    if found is None:
        raise NotFound(f"no patient {given!r}")
    return keys[0]


@dataclass
class RunChanges:
    """What one run changed for the patient."""

    run_id: int
    started_at: str
    data_cutoff: str | None
    changes: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "data_cutoff": self.data_cutoff,
            "changes": self.changes,
        }


def patient_history(engine: Engine, patient_key: str) -> tuple[str, list[RunChanges]]:
    """The patient's full pseudonym and, oldest run first, what each run changed."""
    with engine.connect() as conn:
        key = resolve_patient_key(conn, patient_key)
        rows = conn.execute(
            select(
                RecordChange.run_id,
                EtlRun.started_at,
                EtlRun.data_cutoff,
                RecordChange.file,
                RecordChange.record_key,
                RecordChange.action,
                RecordChange.columns,
            )
            .join(EtlRun, EtlRun.run_id == RecordChange.run_id)
            .where(RecordChange.patient_key == key)
            .order_by(RecordChange.run_id, RecordChange.change_id)
        ).all()
        added_later = {(r.file, r.record_key) for r in rows if r.action == "added"}
        first_load = {
            r.file: _first_load_records(conn, r.file, key, added_later) for r in rows if r.action == LOADED
        }
    runs: list[RunChanges] = []
    for r in rows:
        if not runs or runs[-1].run_id != r.run_id:
            cutoff = r.data_cutoff.isoformat() if r.data_cutoff else None
            runs.append(RunChanges(r.run_id, r.started_at.isoformat(timespec="seconds"), cutoff))
        if r.action == LOADED:  # the site's first load: every record it added, one by one
            runs[-1].changes += [
                {"file": r.file, "record": k, "action": "added", "columns": []} for k in first_load[r.file]
            ]
            continue
        runs[-1].changes.append(
            {
                "file": r.file,
                "record": r.record_key,
                "action": r.action,
                "columns": r.columns.split(",") if r.columns else [],
            }
        )
    return key, runs


def _first_load_records(
    conn: Connection, file: str, patient_key: str, added_later: set[tuple[str, str]]
) -> list[str]:
    """The records of the patient in ``file`` that the site's first load added: every one the
    registry holds (current or retired: records are never deleted) that no later run logged as
    added. A record the site later moved to another patient is listed under that patient."""
    table = Base.metadata.tables[input_file(file).table]
    pk = next(iter(table.primary_key.columns))
    keys = conn.execute(select(pk).where(table.c.patient_key == patient_key).order_by(pk)).scalars()
    return [k for k in keys if (file, k) not in added_later]
