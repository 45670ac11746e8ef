"""Every foreign key that a delete or a join walks has an index that starts with it: without
one, deleting a parent row scans the child table (re-deriving every patient grew with the
square of the registry). The exceptions walk nothing, and say why."""

from __future__ import annotations

from sqlalchemy import UniqueConstraint

from registry.db.models import Base

# child column -> why it needs no index of its own
NOT_WALKED = {
    "derivation_run_id": "derivation runs are never deleted; nothing joins from a run to its rows",
    "drug_id": "vocabulary rows are never deleted; joins go from the row to the drug (its primary key)",
}


def uncovered_foreign_keys() -> list[str]:
    out = []
    for table in Base.metadata.sorted_tables:
        leading = {ix.columns.keys()[0] for ix in table.indexes}
        leading |= {c.columns.keys()[0] for c in table.constraints if isinstance(c, UniqueConstraint)}
        if table.primary_key.columns:
            leading.add(table.primary_key.columns.keys()[0])
        for fk in table.foreign_keys:
            column = fk.parent.name
            if column not in leading and column not in NOT_WALKED:
                out.append(f"{table.name}.{column} -> {fk.target_fullname}")
    return sorted(out)


def test_every_walked_foreign_key_has_a_covering_index() -> None:
    assert uncovered_foreign_keys() == []


def test_the_exceptions_are_real_foreign_keys() -> None:
    columns = {fk.parent.name for t in Base.metadata.sorted_tables for fk in t.foreign_keys}
    assert set(NOT_WALKED) <= columns
