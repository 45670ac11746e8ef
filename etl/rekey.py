"""Re-key a registry in place: every pseudonym made with the old key is replaced by the one the
new key makes, so later loads with the new key find the same patients and records.

A pseudonym is a one-way HMAC of a source id, and source ids are never stored; so re-keying needs
the ids again: the sites' current full exports (one bundle per site, read for their id columns
only). For every id in a bundle the old and new pseudonyms are computed with both keys; a
pseudonym the bundles do not contain (a record the hospital no longer sends, retired here)
becomes ``HMAC(new key, "rekeyed:" + old pseudonym)`` — a new key's pseudonym that no future id
maps to, as a retired record should. One transaction, under the writer lock: the loaded tables
(parents re-inserted under their new key before their children move, so foreign keys hold on
both engines), the change log, findings, the quarantine's stored rows, and the key fingerprint;
the derived rows are deleted and every patient is flagged for derivation (they are rebuilt with
the new keys by the derivation that follows). A failure leaves the registry as it was.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    Table,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)

from etl.bundle import Bundle, Limits, read_manifest
from etl.extract import iter_chunks, read_header
from etl.specs import SPECS
from etl.transform import Pseudonymiser, pseudonym
from registry.core.errors import ConfigError, UsageError
from registry.db.database import writer_lock
from registry.db.keyprint import check_key, fingerprint
from registry.db.models import (
    CLINICAL_SOURCE_TABLES,
    DERIVED_TABLES,
    KEY,
    Base,
    InputFinding,
    KeyFingerprint,
    Patient,
    QuarantinedRow,
    RecordChange,
    pseudonym_columns,
)

# (table, its pseudonym columns) of every loaded table, the patients first (the parent), taken
# from the models: a table added to the contract is re-keyed with the others (the laboratory
# series once was not)
KEYED = tuple(
    (table, pseudonym_columns(table))
    for table in sorted(
        (Base.metadata.tables[name] for name in CLINICAL_SOURCE_TABLES), key=lambda t: t.name != "patients"
    )
)


@dataclass(frozen=True)
class RekeyResult:
    """What a re-keying did: pseudonyms mapped from the bundles, and those of records no bundle
    holds any more (given a fresh pseudonym under the new key)."""

    mapped: int
    orphaned: int
    patients: int


def _bundle_map(path: Path, old: bytes, new: bytes, limits: Limits) -> dict[str, str]:
    """old pseudonym -> new pseudonym for every id in a bundle's files."""
    out: dict[str, str] = {}
    with Bundle(path, limits) as bundle:
        manifest = read_manifest(bundle)
        before, after = Pseudonymiser(old, manifest.site_id), Pseudonymiser(new, manifest.site_id)
        for spec in SPECS.values():
            header = read_header(bundle, spec)
            id_cols = spec.source_ids
            for chunk in iter_chunks(bundle, spec, header):
                for col, ns in id_cols.items():
                    if col not in chunk.frame.columns:
                        continue
                    for value in chunk.frame[col].unique():
                        if value:
                            out[before.one(ns, value)] = after.one(ns, value)
    return out


def _remap_json(value: Any, mapping: Callable[[str], str | None]) -> Any:
    if isinstance(value, str):
        return mapping(value) or value
    if isinstance(value, list):
        return [_remap_json(v, mapping) for v in value]
    if isinstance(value, dict):
        return {k: _remap_json(v, mapping) for k, v in value.items()}
    return value


def rekey(
    engine: Engine,
    bundles: Iterable[Path],
    old_key: bytes,
    new_key: bytes,
    limits: dict[str, float] | None = None,
) -> RekeyResult:
    """Re-pseudonymise the registry from ``old_key`` to ``new_key`` with the sites' full exports
    (read within ``limits``, the settings' bundle limits).

    Raises
    ------
    ConfigError
        ``old_key`` is not the registry's key (78), or the two keys are the same.
    UsageError
        No bundle given (64).
    """
    paths = list(bundles)
    if not paths:
        raise UsageError("re-keying needs the sites' current full exports (one bundle per site)")
    if hmac.compare_digest(old_key, new_key):
        raise ConfigError("the new pseudonym key is the same as the current one: nothing to do")
    with engine.connect() as conn:
        if not check_key(conn, old_key):  # 78 for another key; nothing recorded: nothing to re-key
            raise ConfigError("this registry has no pseudonyms yet (no load): nothing to re-key")
    mapping: dict[str, str] = {}
    for path in paths:
        mapping.update(_bundle_map(path, old_key, new_key, Limits.of(limits or {})))
    with writer_lock(engine), engine.begin() as conn:
        return _apply(conn, mapping, new_key)


def _apply(conn: Connection, from_bundles: dict[str, str], new_key: bytes) -> RekeyResult:
    mapping, orphaned = _mapping(conn, from_bundles, new_key)
    dialect = conn.dialect.name
    for name in DERIVED_TABLES:  # rebuilt by the derivation that follows, with the new keys
        conn.execute(text(f"DELETE FROM {name}"))
    _load_map(conn, mapping)
    # parents: insert each patient under its new key, move the children, then drop the old rows
    names = [c.name for c in Patient.__table__.columns if c.name != "patient_key"]
    conn.execute(
        text(
            f"INSERT INTO patients (patient_key, {', '.join(names)}) "
            f"SELECT m.new_key, {', '.join('p.' + c for c in names)} FROM patients p "
            "JOIN rekey_map m ON m.old_key = p.patient_key"
        )
    )
    for table, keys in KEYED[1:]:
        for col in keys:
            _update(conn, table.name, col, dialect)
    conn.execute(text("DELETE FROM patients WHERE patient_key IN (SELECT old_key FROM rekey_map)"))
    for table_name, col in (
        ("record_changes", "patient_key"),
        ("record_changes", "record_key"),
        ("input_findings", "record_key"),
        ("input_findings", "patient_key"),
    ):
        _update(conn, table_name, col, dialect)
    _remap_findings_and_quarantine(conn, mapping)
    conn.execute(text("UPDATE patients SET needs_derivation = TRUE WHERE is_current = TRUE"))
    recorded = conn.execute(select(KeyFingerprint.recorded_at, KeyFingerprint.run_id)).first()
    conn.execute(delete(KeyFingerprint))
    conn.execute(
        insert(KeyFingerprint).values(
            fingerprint=fingerprint(new_key),
            recorded_at=recorded.recorded_at if recorded else None,
            run_id=recorded.run_id if recorded else None,
        )
    )
    conn.execute(text("DROP TABLE rekey_map"))
    patients = conn.execute(text("SELECT COUNT(*) FROM patients")).scalar_one()
    return RekeyResult(mapped=len(mapping) - orphaned, orphaned=orphaned, patients=int(patients))


def _mapping(conn: Connection, from_bundles: dict[str, str], new_key: bytes) -> tuple[dict[str, str], int]:
    """Every pseudonym stored -> its new one (from the bundles; a record no bundle holds any
    more gets an unlinkable one), and how many were orphaned so."""
    existing: set[str] = set()
    for table, cols in KEYED:
        for col in cols:
            existing.update(conn.execute(select(table.c[col]).distinct()).scalars())
    for attr in (
        RecordChange.patient_key,
        RecordChange.record_key,
        InputFinding.record_key,
        InputFinding.patient_key,
    ):
        existing.update(v for v in conn.execute(select(attr).distinct()).scalars() if v)
    mapping = {old: from_bundles[old] for old in existing if old in from_bundles}
    orphaned = 0
    for old in existing - mapping.keys():  # records no bundle holds any more
        mapping[old] = pseudonym(hmac.new(new_key, b"rekeyed:" + old.encode(), "sha256"))
        orphaned += 1
    return mapping, orphaned


def _remap_findings_and_quarantine(conn: Connection, mapping: dict[str, str]) -> None:
    """Pseudonyms inside a finding's value and inside quarantined rows' reasons and data."""
    findings = conn.execute(select(InputFinding.finding_id, InputFinding.value)).all()
    changed = [{"fid": f.finding_id, "v": mapping[f.value]} for f in findings if f.value in mapping]
    if changed:
        conn.execute(
            update(InputFinding)
            .where(InputFinding.finding_id == bindparam("fid"))
            .values(value=bindparam("v")),
            changed,
        )
    rows = conn.execute(
        select(QuarantinedRow.quarantine_id, QuarantinedRow.reasons, QuarantinedRow.row_data)
    ).all()
    moved = []
    for r in rows:
        reasons, data = _remap_json(r.reasons, mapping.get), _remap_json(r.row_data, mapping.get)
        if json.dumps(reasons) != json.dumps(r.reasons) or json.dumps(data) != json.dumps(r.row_data):
            moved.append({"qid": r.quarantine_id, "reasons": reasons, "row_data": data})
    if moved:
        conn.execute(
            update(QuarantinedRow)
            .where(QuarantinedRow.quarantine_id == bindparam("qid"))
            .values(reasons=bindparam("reasons"), row_data=bindparam("row_data")),
            moved,
        )


def _load_map(conn: Connection, mapping: dict[str, str]) -> None:
    # the pseudonyms' own type (on PostgreSQL their collation: a join across two would not run)
    Table(
        "rekey_map",
        MetaData(),
        Column("old_key", KEY, primary_key=True),
        Column("new_key", KEY, nullable=False),
        prefixes=["TEMPORARY"],
    ).create(conn)
    items = [{"o": o, "n": n} for o, n in mapping.items()]
    for i in range(0, len(items), 50_000):
        conn.execute(text("INSERT INTO rekey_map (old_key, new_key) VALUES (:o, :n)"), items[i : i + 50_000])


def _update(conn: Connection, table: str, col: str, dialect: str) -> None:
    """Set ``col`` to its new pseudonym through the map (a join on the map's primary key on both
    engines: never a per-row scan)."""
    if dialect == "postgresql":
        sql = f"UPDATE {table} t SET {col} = m.new_key FROM rekey_map m WHERE t.{col} = m.old_key"
    else:
        sql = f"UPDATE {table} SET {col} = m.new_key FROM rekey_map m WHERE {table}.{col} = m.old_key"
    conn.execute(text(sql))
