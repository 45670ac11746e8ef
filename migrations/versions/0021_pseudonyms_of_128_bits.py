"""pseudonyms of 128 bits

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-08 05:00:00

A pseudonym was all 256 bits of an HMAC-SHA256 in hex (64 characters); it is now the first 128
bits (32 characters), as the load makes them from here on. Every key column of every table
(loaded, derived, the change log, findings) keeps the first 32 characters of what it holds, and
so do the pseudonyms inside findings' values and quarantined rows (their source-id columns): the
same records, under the same (shorter) names, so the next load finds them all. On PostgreSQL the
key columns become ``VARCHAR(32) COLLATE "C"`` (one rewrite of each table with its indexes; the
follow-up's foreign key to the patients is dropped for the rewrite and added again); SQLite does
not enforce a ``VARCHAR`` length, so its declared types stay and only the values are cut.

The largest tables and their indexes are about a third smaller, and PostgreSQL's inserts into
them faster (docs/benchmarks.md).

Downgrading gives PostgreSQL's columns their old type back but cannot give the pseudonyms their
other 128 bits (they are never recomputable without the source ids): the registry stays
consistent, but the code of a revision before 0021 would make 64-character pseudonyms and find
none of its records. Going below 0021 is for going up again (as the tests do), not for running
an older release on a loaded registry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHARS = 32

# every column holding a pseudonym at revision 0020 (the columns of type KEY)
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": ("patient_key",),
    "follow_up": ("patient_key",),
    "transplants": ("transplant_key", "patient_key"),
    "treatments": ("treatment_key", "patient_key"),
    "disease_events": ("event_key", "patient_key"),
    "labs": ("lab_key", "patient_key"),
    "record_changes": ("patient_key", "record_key"),
    "input_findings": ("record_key", "patient_key"),
    "exposures": ("patient_key",),
    "exposure_sources": ("treatment_key", "patient_key"),
    "regimen_exposures": ("patient_key",),
    "regimens": ("patient_key",),
    "lines_of_therapy": ("patient_key",),
    "line_drugs": ("patient_key",),
    "relapses": ("patient_key", "source_key"),
    "relapse_refractoriness": ("patient_key",),
    "response_assessments": ("patient_key",),
    "transplant_roles": ("transplant_key", "patient_key"),
    "patient_summaries": ("patient_key", "index_transplant_key"),
}
# the columns of a delivered file that hold source ids (stored as pseudonyms in quarantined rows,
# their reasons and findings' values)
SOURCE_ID_COLUMNS = ("patient_id", "transplant_id", "treatment_id", "event_id", "lab_id")
FOLLOW_UP_FK = "fk_follow_up_patient_key_patients"


def _cut(value: object) -> object:
    if isinstance(value, str) and len(value) > CHARS:
        return value[:CHARS]
    return value


def _quarantine_and_findings(conn: sa.Connection) -> None:
    """The pseudonyms inside quarantined rows (a row's source-id values and its reasons' values
    on those columns) and in findings' values on source-id columns."""
    ids = ", ".join(f"'{c}'" for c in SOURCE_ID_COLUMNS)
    conn.execute(
        sa.text(
            f'UPDATE input_findings SET value = substr(value, 1, {CHARS}) WHERE "column" IN ({ids}) '
            f"AND length(value) > {CHARS}"
        )
    )
    quarantine = sa.table(
        "quarantine",
        sa.column("quarantine_id"),
        sa.column("reasons", sa.JSON),
        sa.column("row_data", sa.JSON),
    )
    changed = []
    for qid, reasons, data in conn.execute(
        sa.select(quarantine.c.quarantine_id, quarantine.c.reasons, quarantine.c.row_data)
    ):
        new_data = {k: _cut(v) if k in SOURCE_ID_COLUMNS else v for k, v in (data or {}).items()}
        new_reasons = [
            {**r, "value": _cut(r.get("value"))}
            if isinstance(r, dict) and r.get("column") in SOURCE_ID_COLUMNS
            else r
            for r in (reasons or [])
        ]
        if json.dumps(new_data) != json.dumps(data) or json.dumps(new_reasons) != json.dumps(reasons):
            changed.append({"qid": qid, "reasons": new_reasons, "row_data": new_data})
    if changed:
        conn.execute(
            quarantine.update()
            .where(quarantine.c.quarantine_id == sa.bindparam("qid"))
            .values(reasons=sa.bindparam("reasons"), row_data=sa.bindparam("row_data")),
            changed,
        )


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.drop_constraint(FOLLOW_UP_FK, "follow_up", type_="foreignkey")
        for table, columns in KEY_COLUMNS.items():
            alters = ", ".join(
                f'ALTER COLUMN {c} TYPE VARCHAR({CHARS}) COLLATE "C" USING substr({c}, 1, {CHARS})'
                for c in columns
            )
            op.execute(f"ALTER TABLE {table} {alters}")
        op.create_foreign_key(FOLLOW_UP_FK, "follow_up", "patients", ["patient_key"], ["patient_key"])
    else:
        # (foreign keys are off while migrations run on SQLite, and checked after them)
        for table, columns in KEY_COLUMNS.items():
            cut = ", ".join(f"{c} = substr({c}, 1, {CHARS})" for c in columns)
            longer = " OR ".join(f"length({c}) > {CHARS}" for c in columns)
            op.execute(f"UPDATE {table} SET {cut} WHERE {longer}")
    _quarantine_and_findings(conn)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # nothing was declared differently (the pseudonyms stay 32 characters: see above)
    op.drop_constraint(FOLLOW_UP_FK, "follow_up", type_="foreignkey")
    for table, columns in KEY_COLUMNS.items():
        alters = ", ".join(f'ALTER COLUMN {c} TYPE VARCHAR(64) COLLATE "default"' for c in columns)
        op.execute(f"ALTER TABLE {table} {alters}")
    op.create_foreign_key(FOLLOW_UP_FK, "follow_up", "patients", ["patient_key"], ["patient_key"])
