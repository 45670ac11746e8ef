"""Load: bulk paths into temporary staging tables, then set-based merges.

PostgreSQL stages with psycopg 3 ``COPY`` of CSV blocks Arrow wrote from a chunk's columns;
SQLite with one ``executemany`` of tuples per chunk. Merges are ``INSERT ... SELECT ... ON
CONFLICT DO UPDATE ... WHERE <some column differs>`` so unchanged rows are not touched and the
row count is the number of rows really changed (a plain ``INSERT`` when every staged row is a
new record). Everything runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import BigInteger, Column, Connection, MetaData, Table, bindparam, select, text

from etl.specs import ROOT, SPECS
from registry.db.bulk import copy_csv, copy_rows, csv_block
from registry.db.history import LOADED
from registry.db.models import Base, Drug, FollowUp, Patient

# target table and primary key column, per loaded file (from the file specs)
TARGETS: dict[str, tuple[str, str]] = {name: (spec.target, spec.key) for name, spec in SPECS.items()}
LINEAGE = ("run_id", "source_row", "row_hash")
CURRENCY = ("is_current", "retired_run_id", "needs_derivation")


def loaded_columns(name: str) -> list[str]:
    """The target table's columns a load writes (data and lineage)."""
    table = Base.metadata.tables[TARGETS[name][0]]
    return [c.name for c in table.columns if c.name not in CURRENCY]


def data_columns(name: str) -> list[str]:
    """The target table's data columns (what a change is judged on)."""
    return [c for c in loaded_columns(name) if c not in LINEAGE]


def _distinct(conn: Connection) -> str:
    return "IS NOT" if conn.dialect.name == "sqlite" else "IS DISTINCT FROM"


def stage_name(name: str) -> str:
    """The temporary staging table of a file."""
    return f"stage_{name}"


def create_stages(conn: Connection) -> None:
    """Create every file's temporary staging table (and the quarantined-keys one)."""
    md = MetaData()
    for name, (target, _pk) in TARGETS.items():
        src = Base.metadata.tables[target]
        cols = [Column(c, src.columns[c].type) for c in loaded_columns(name)]
        stage = Table(stage_name(name), md, *cols, prefixes=["TEMPORARY"])
        stage.create(conn)
    key_type = Base.metadata.tables[TARGETS[ROOT][0]].c.patient_key.type
    qk = Table(
        "stage_quarantined_keys",
        md,
        Column("file", key_type),
        Column("key", key_type),
        prefixes=["TEMPORARY"],
    )
    qk.create(conn)
    conn.execute(text("CREATE INDEX ix_stage_quarantined_keys ON stage_quarantined_keys (key, file)"))
    # hashes of the site's records a full export no longer sends unchanged (retirement candidates)
    Table("stage_gone", md, Column("file", key_type), Column("h", BigInteger), prefixes=["TEMPORARY"]).create(
        conn
    )
    conn.execute(text("CREATE INDEX ix_stage_gone ON stage_gone (h, file)"))
    # patients whose own rows (patients, follow-up) changed tonight: their other rows are read again
    Table("stage_dirty_patients", md, Column("patient_key", key_type), prefixes=["TEMPORARY"]).create(conn)
    # the records of one file that a full export retires (found in one pass over the table)
    Table(
        "stage_retiring", md, Column("k", key_type), Column("patient_key", key_type), prefixes=["TEMPORARY"]
    ).create(conn)


def index_stage(conn: Connection, name: str) -> None:
    """Index a filled staging table (faster than indexing row by row while filling) and give
    PostgreSQL statistics on it (temporary tables are never auto-analysed)."""
    pk = TARGETS[name][1]
    st = stage_name(name)
    conn.execute(text(f"CREATE INDEX ix_{st}_key ON {st} ({pk})"))
    if pk != "patient_key":
        conn.execute(text(f"CREATE INDEX ix_{st}_pat ON {st} (patient_key)"))
    conn.execute(text(f"ANALYZE {st}"))


# columns that refer to another table without a foreign-key constraint (a trigger a row cost
# half of a large first insert on PostgreSQL): every merged record is checked at once instead
REFERENCES = {
    "patient_key": (Patient.__tablename__, "patient_key"),
    "drug_id": (Drug.__tablename__, "drug_id"),
}


def dangling_references(conn: Connection) -> dict[tuple[str, str], int]:
    """The staged records of each file (what the merge wrote) whose patient or drug the
    registry does not have, counted by (file, column): one anti-join a column, run before the
    commit. Empty when the load kept its promise (the orphan rule quarantines such rows)."""
    out: dict[tuple[str, str], int] = {}
    for name, spec in SPECS.items():
        if name == ROOT:
            continue
        staged = Base.metadata.tables[spec.target].columns
        for column, (table, key) in REFERENCES.items():
            if column not in staged:
                continue
            n = conn.execute(
                text(
                    f"SELECT COUNT(*) FROM {stage_name(name)} s WHERE s.{column} IS NOT NULL AND NOT EXISTS "
                    f"(SELECT 1 FROM {table} r WHERE r.{key} = s.{column})"
                )
            ).scalar_one()
            if n:
                out[(name, column)] = int(n)
    return out


def drop_stages(conn: Connection) -> None:
    """Drop the staging tables."""
    for name in TARGETS:
        conn.execute(text(f"DROP TABLE IF EXISTS {stage_name(name)}"))
    for extra in ("stage_quarantined_keys", "stage_gone", "stage_dirty_patients", "stage_retiring"):
        conn.execute(text(f"DROP TABLE IF EXISTS {extra}"))


def _tuples(df: pd.DataFrame, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """Rows as tuples of Python values (None for every kind of null), built column by column
    (a column's values converted at once, then zipped: a third of the time of converting the
    frame and iterating its rows)."""
    cols = []
    for c in columns:
        values = df[c].to_numpy(dtype=object)
        nulls = pd.isna(values)
        if nulls.any():
            values = values.copy()
            values[nulls] = None
        cols.append(values.tolist())
    return list(zip(*cols, strict=True))


def staged_tuples(name: str, frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """A chunk of target rows as the tuples ``stage_tuples`` copies (no database: a worker
    process can build them)."""
    return _tuples(frame, loaded_columns(name))


def staged_csv(name: str, frame: pd.DataFrame) -> bytes:
    """A chunk of target rows as a CSV block for PostgreSQL's ``COPY`` (``stage``), written
    column by column by Arrow (no database: a worker process can write it)."""
    return csv_block(frame, loaded_columns(name))


def stage(conn: Connection, name: str, staged: list[tuple[Any, ...]] | bytes) -> None:
    """Copy a chunk of target rows into the file's staging table: tuples (``staged_tuples``)
    or, on PostgreSQL, a CSV block (``staged_csv``)."""
    if isinstance(staged, bytes):
        copy_csv(conn, stage_name(name), loaded_columns(name), staged)
    else:
        copy_rows(conn, stage_name(name), loaded_columns(name), staged)


def stage_quarantined_keys(conn: Connection, name: str, keys: Iterable[str]) -> None:
    """Remember the keys of a file's quarantined rows (for duplicates and retirement)."""
    copy_rows(conn, "stage_quarantined_keys", ["file", "key"], [(name, k) for k in keys])


_INDEX_SCANS = ("enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan")  # PostgreSQL settings


def duplicate_rows(conn: Connection, name: str) -> pd.DataFrame:
    """Staged rows whose key occurs more than once in the file (valid or quarantined rows)."""
    pk = TARGETS[name][1]
    st = stage_name(name)
    # one join with the few keys in question (a key that is not unique, or that a quarantined
    # row has too): PostgreSQL ran "IN (... HAVING COUNT(*) > 1) OR IN (...)" as a subquery
    # per row when the grouping did not fit in work_mem (2.8 s for 527,000 rows, 0.6 s so)
    sql = f"""
        SELECT s.* FROM {st} s
        JOIN (SELECT {pk} AS k FROM {st} GROUP BY {pk} HAVING COUNT(*) > 1
              UNION SELECT key FROM stage_quarantined_keys WHERE file = :f) d ON d.k = s.{pk}
        ORDER BY s.source_row
    """
    if conn.dialect.name != "postgresql":
        return pd.read_sql_query(text(sql), conn, params={"f": name})
    # PostgreSQL groups the keys by walking the stage's key index, fetching each row from the
    # table in key order (a new temporary table has no visibility map, and VACUUM cannot run in
    # the load's transaction): 4.3 s for 1,500,000 rows, against 1.0 s hashing them from a
    # sequential scan. Index scans are off for this statement only.
    for setting in _INDEX_SCANS:
        conn.exec_driver_sql(f"SET LOCAL {setting} = off")
    found = pd.read_sql_query(text(sql), conn, params={"f": name})
    for setting in _INDEX_SCANS:
        conn.exec_driver_sql(f"RESET {setting}")  # (a failed statement rolls them back with the rest)
    return found


def staged_keys_among(conn: Connection, name: str, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` (keys of quarantined rows) also occur among the staged rows."""
    pk = TARGETS[name][1]
    sql = f"""SELECT DISTINCT s.{pk} FROM {stage_name(name)} s
              JOIN stage_quarantined_keys q ON q.key = s.{pk} AND q.file = :f"""
    found = {r[0] for r in conn.execute(text(sql), {"f": name})}
    return found & set(keys)


def unstage(conn: Connection, name: str, source_rows: Sequence[int]) -> None:
    """Remove staged rows by source row number (duplicates moved to the quarantine): one
    statement per 5,000 rows, each one pass over the stage (``source_row`` is not indexed; a
    statement per row was a full scan per duplicate: 150 s for a 100,000-patient bundle)."""
    st = stage_name(name)
    rows = [int(r) for r in source_rows]
    for i in range(0, len(rows), 5000):
        conn.execute(
            text(f"DELETE FROM {st} WHERE source_row IN :rows").bindparams(bindparam("rows", expanding=True)),
            {"rows": rows[i : i + 5000]},
        )


def log_changes(conn: Connection, name: str, run_id: int) -> int:
    """Write to the change log (``record_changes``) every staged record the merge will add,
    change (with the names of the columns that differ) or reinstate, and flag those records'
    patients for derivation. Run before ``merge``. Returns the number of records logged."""
    target, pk = TARGETS[name]
    st = stage_name(name)
    distinct = _distinct(conn)
    cols = data_columns(name)
    differs = " OR ".join(f"t.{c} {distinct} s.{c}" for c in cols)
    changed = " || ".join(f"CASE WHEN t.{c} {distinct} s.{c} THEN '{c},' ELSE '' END" for c in cols)
    res = conn.execute(
        text(f"""
        INSERT INTO record_changes (run_id, patient_key, file, record_key, action, columns)
        SELECT :run, s.patient_key, :f, s.{pk},
               CASE WHEN t.{pk} IS NULL THEN 'added' WHEN t.is_current = FALSE THEN 'reinstated'
                    ELSE 'changed' END,
               CASE WHEN t.{pk} IS NOT NULL AND t.is_current = TRUE THEN rtrim({changed}, ',') END
        FROM {st} s LEFT JOIN {target} t ON t.{pk} = s.{pk}
        WHERE t.{pk} IS NULL OR t.is_current = FALSE OR {differs}
        ORDER BY s.patient_key
        """),
        {"run": run_id, "f": name},
    )
    if name != ROOT:  # the patients upsert sets the flag itself
        _flag_logged_patients(conn, name, run_id)
    return int(res.rowcount or 0)


def first_load_of_site(conn: Connection, site: str) -> bool:
    """Whether the registry holds none of the site's patients (current or retired)."""
    patients = TARGETS[ROOT][0]
    found = conn.execute(text(f"SELECT 1 FROM {patients} WHERE site_code = :site LIMIT 1"), {"site": site})
    return found.first() is None


def log_first_load(conn: Connection, name: str, run_id: int) -> int:
    """A site's first load (the registry holds none of its patients): one change-log row a
    patient and file instead of one a record — action ``loaded``, the patient's own key as
    ``record_key`` (so re-keying maps it like any pseudonym) — standing for every record of the
    patient in the file that no later run logs as added; ``registry patient history`` lists
    them. Every staged row is a new record. Returns the number of records it stands for."""
    st = stage_name(name)
    conn.execute(
        text(f"""
        INSERT INTO record_changes (run_id, patient_key, file, record_key, action)
        SELECT :run, patient_key, :f, patient_key, :action FROM {st} GROUP BY patient_key
        ORDER BY patient_key
        """),
        {"run": run_id, "f": name, "action": LOADED},
    )
    if name != ROOT:
        _flag_logged_patients(conn, name, run_id)
    return int(conn.execute(text(f"SELECT COUNT(*) FROM {st}")).scalar_one())


def _flag_logged_patients(conn: Connection, name: str, run_id: int) -> None:
    """Flag for derivation the patients of the file's records this run logged as changed."""
    if conn.execute(text("SELECT 1 FROM patients WHERE needs_derivation = FALSE LIMIT 1")).first() is None:
        # every patient is flagged already (a first load): nothing to do. Updating them again
        # rewrote every patient once a file (on PostgreSQL a new row version and its index
        # entries each: 0.6-0.8 s a file at 20,000 patients, 17 s over the files at 100,000)
        return
    conn.execute(
        text(
            # (not "AND needs_derivation = FALSE": PostgreSQL then planned a look-up per patient,
            # 1.7-2.5 s a file on a second night of 20,000 patients against 0.1 s)
            "UPDATE patients SET needs_derivation = TRUE WHERE patient_key IN "
            "(SELECT patient_key FROM record_changes WHERE run_id = :run AND file = :f)"
        ),
        {"run": run_id, "f": name},
    )


def only_added(conn: Connection, name: str, run_id: int, logged: int) -> bool:
    """Whether every staged row of the file is a record the registry does not have: the change
    log (``log_changes`` returned ``logged``) holds one 'added' entry a staged row and nothing
    else (as on a first load)."""
    st = stage_name(name)
    staged = conn.execute(text(f"SELECT COUNT(*) FROM {st}")).scalar()
    if staged != logged:
        return False
    other = conn.execute(
        text("SELECT 1 FROM record_changes WHERE run_id = :run AND file = :f AND action <> 'added' LIMIT 1"),
        {"run": run_id, "f": name},
    ).first()
    return other is None


def merge(conn: Connection, name: str, *, only_new: bool = False) -> None:
    """Upsert staged rows: new, changed or reinstated records, and records whose source row's
    text changed without changing their content (their new ``row_hash`` is kept, so the row is
    recognised as unchanged the next night). With ``only_new`` (``only_added`` said so) a plain
    insert: on SQLite the conflict check cost a fifth of a first load's largest insert (5.0 ->
    4.0-4.3 s for 527,000 treatments; on PostgreSQL no measurable difference); should a key
    exist after all, the insert fails and the run with it, nothing is overwritten.

    Rows go in in patient order: the indexes on ``patient_key`` then grow by appending
    neighbours instead of inserting at random places. Pseudonyms are random, so in file order a
    large first load touches a random page of each such index per row, and once those indexes
    outgrow the page cache every row costs a page written and read again. (Dropping a first
    load's secondary indexes and building them after the insert was measured: no gain on SQLite
    at 20,000 patients, and rows in primary-key order then scattered each patient's rows over
    the table, slowing the nights after; on PostgreSQL dropping an index makes readers wait.)"""
    target, pk = TARGETS[name]
    cols = loaded_columns(name)
    content_differs = " OR ".join(f"{target}.{c} {_distinct(conn)} excluded.{c}" for c in data_columns(name))
    extra_cols, extra_vals, extra_set = "", "", ""
    if name == ROOT:
        # a patient is flagged when its record's content changed or it comes back, never because
        # its line's text did (re-ordered, re-encoded or re-quoted deliveries change no fact)
        extra_cols, extra_vals = ", needs_derivation", ", TRUE"
        extra_set = (
            f", needs_derivation = CASE WHEN {target}.is_current = FALSE OR {content_differs} "
            f"THEN TRUE ELSE {target}.needs_derivation END"
        )
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != pk)
    differs = f"{content_differs} OR {target}.row_hash {_distinct(conn)} excluded.row_hash"
    upsert = f"""
        ON CONFLICT ({pk}) DO UPDATE SET {updates}, is_current = TRUE,
            retired_run_id = NULL{extra_set}
        WHERE {target}.is_current = FALSE OR {differs}"""
    sql = f"""
        INSERT INTO {target} ({", ".join(cols)}, is_current, retired_run_id{extra_cols})
        SELECT {", ".join(cols)}, TRUE, NULL{extra_vals} FROM {stage_name(name)} WHERE TRUE
        ORDER BY patient_key {"" if only_new else upsert}
    """
    conn.execute(text(sql))


def missing_records(name: str) -> tuple[str, str]:
    """(scope, missing): SQL conditions on the file's target table for the site's records and
    for those among them the bundle no longer sends (parameters ``:site`` and ``:f``)."""
    target, pk = TARGETS[name]
    st = stage_name(name)
    patients = TARGETS[ROOT][0]
    scope = (
        "site_code = :site"
        if name == ROOT
        else f"EXISTS (SELECT 1 FROM {patients} p WHERE p.patient_key = {target}.patient_key "
        f"AND p.site_code = :site)"
    )
    # anti-joins, not NOT IN: PostgreSQL runs NOT IN over a subquery larger than work_mem as a
    # scan per row (quadratic); NOT EXISTS is a hash or merge anti-join on both engines
    missing = f"""
        {target}.is_current = TRUE AND {scope}
        AND NOT EXISTS (SELECT 1 FROM {st} s WHERE s.{pk} = {target}.{pk})
        AND NOT EXISTS (SELECT 1 FROM stage_quarantined_keys q WHERE q.file = :f AND q.key = {target}.{pk})
    """
    return scope, missing


def retire_missing(conn: Connection, name: str, site: str, run_id: int, *, gone_only: bool = False) -> int:
    """``mode: full``: current records of the site that this bundle no longer sends become
    history. A record whose new version was quarantined stays current (the site still sends
    it; its correction is pending). With ``gone_only`` (the file was compared row by row), only
    records whose hash is in ``stage_gone`` are candidates: the others were sent unchanged."""
    target = TARGETS[name][0]
    scope, missing = missing_records(name)
    if gone_only:  # first: the one cheap, selective test (SQLite evaluates the terms in order)
        missing = (
            f"EXISTS (SELECT 1 FROM stage_gone g WHERE g.h = {target}.row_hash AND g.file = :f) AND {missing}"
        )
    params = {"site": site, "run": run_id, "f": name}
    earlier = conn.execute(
        text(f"SELECT 1 FROM {target} WHERE {scope} AND run_id <> :run AND is_current = TRUE LIMIT 1"),
        params,
    ).first()
    if earlier is None:
        return 0  # nothing of this site predates the run: nothing to retire
    pk = TARGETS[name][1]
    # one pass over the site's records finds them; logging and retiring then go by key
    conn.execute(text("DELETE FROM stage_retiring"))
    conn.execute(
        text(
            f"INSERT INTO stage_retiring (k, patient_key) "
            f"SELECT {pk}, patient_key FROM {target} WHERE {missing}"
        ),
        params,
    )
    conn.execute(text("ANALYZE stage_retiring"))  # PostgreSQL's planner: how few they are
    conn.execute(
        text(
            "INSERT INTO record_changes (run_id, patient_key, file, record_key, action) "
            "SELECT :run, patient_key, CAST(:fname AS VARCHAR(32)), k, 'retired' FROM stage_retiring"
        ),
        {"run": run_id, "fname": name},
    )
    _flag_logged_patients(conn, name, run_id)  # the retired records' patients
    res = conn.execute(
        text(
            f"UPDATE {target} SET is_current = FALSE, retired_run_id = :run "
            f"WHERE {pk} IN (SELECT k FROM stage_retiring)"
        ),
        {"run": run_id},
    )
    return int(res.rowcount or 0)


# ------------------------------------------------------------- row-by-row change detection
def _site_scope(name: str) -> str:
    target = TARGETS[name][0]
    patients = TARGETS[ROOT][0]
    if name == ROOT:
        return f"FROM {target} t WHERE t.site_code = :site AND t.is_current = TRUE"
    return (
        f"FROM {target} t JOIN {patients} p ON p.patient_key = t.patient_key "
        f"WHERE p.site_code = :site AND t.is_current = TRUE"
    )


def mark_dirty_patients(conn: Connection, site: str, names: Sequence[str]) -> int:
    """Fill ``stage_dirty_patients`` with the site's patients whose rows in the files ``names``
    (those the other files are checked against: patients, follow-up; already staged and
    de-duplicated) differ from their current records: new, changed, no longer sent or
    quarantined. Returns their number."""
    for name in names:
        target, pk = TARGETS[name]
        st = stage_name(name)
        conn.execute(
            text(f"""
            INSERT INTO stage_dirty_patients (patient_key)
            SELECT s.patient_key FROM {st} s WHERE NOT EXISTS (
                SELECT 1 FROM {target} t WHERE t.{pk} = s.{pk} AND t.is_current = TRUE
                AND t.row_hash = s.row_hash)
            UNION
            SELECT t.patient_key {_site_scope(name)} AND NOT EXISTS (
                SELECT 1 FROM {st} s WHERE s.{pk} = t.{pk} AND s.row_hash = t.row_hash)
            """),
            {"site": site},
        )
    conn.execute(text("CREATE INDEX ix_stage_dirty_patients ON stage_dirty_patients (patient_key)"))
    conn.execute(text("ANALYZE stage_dirty_patients"))
    return int(
        conn.execute(text("SELECT COUNT(DISTINCT patient_key) FROM stage_dirty_patients")).scalar() or 0
    )


def patient_facts(conn: Connection, site: str) -> pd.DataFrame:
    """The site's current patients as the cross-file rules read them (``PatientFacts.frame``):
    birth, diagnosis, death and last contact dates, indexed by patient pseudonym."""
    found = conn.execute(
        select(
            Patient.patient_key,
            Patient.birth_date,
            Patient.diagnosis_date,
            FollowUp.death_date,
            FollowUp.last_contact_date,
        )
        .outerjoin(FollowUp, (FollowUp.patient_key == Patient.patient_key) & FollowUp.is_current)
        .where(Patient.site_code == site, Patient.is_current)
    ).all()
    columns = ["key", "birth_date", "diagnosis_date", "death_date", "last_contact_date"]
    frame = pd.DataFrame(found, columns=columns, dtype=object)
    for col in columns[1:]:
        frame[col] = pd.to_datetime(frame[col], format="ISO8601").astype("datetime64[ns]")
    frame.index = pd.Index(frame["key"].to_numpy())
    return frame


def stored_hashes(conn: Connection, name: str, site: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The hashes of the site's current records of a file, and those of them a row of tonight's
    export may match (records of patients not in ``stage_dirty_patients``). None when a record
    has no hash (loaded before hashes were kept) or two records share one: then the file is read
    in full."""
    pg = conn.dialect.name == "postgresql"
    scope = _site_scope(name).replace(":site", "%s" if pg else "?")
    # hundreds of thousands of integers: one comma-joined text each, parsed by numpy (a third of
    # the time of fetching them as rows)
    joined = "string_agg(t.row_hash::text, ',')" if pg else "group_concat(t.row_hash, ',')"
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        cur.execute(f"SELECT COUNT(*), COUNT(t.row_hash), {joined} {scope}", (site,))
        counted = cur.fetchone()
        assert counted is not None
        rows, hashed, everything = counted
        if rows != hashed:
            return None
        # the records of patients whose own rows changed (few: found through their keys)
        cur.execute(
            f"SELECT {joined} FROM stage_dirty_patients d JOIN {TARGETS[name][0]} t "
            "ON t.patient_key = d.patient_key WHERE t.is_current = TRUE"
        )
        joined_dirty = cur.fetchone()
        assert joined_dirty is not None
        (dirty,) = joined_dirty
    finally:
        cur.close()
    stored = _integers(everything)
    index = pd.Index(stored)  # a hash table (numpy's unique sorts: 0.4 s at 500,000)
    if not index.is_unique:
        return None
    return stored, stored[~index.isin(_integers(dirty))]


def _integers(joined: str | None) -> np.ndarray:
    # numpy's own text parser: a sixth of the time of splitting into Python strings
    return np.fromstring(joined, dtype=np.int64, sep=",") if joined else np.zeros(0, dtype=np.int64)


def staged_record_hashes(conn: Connection, name: str, quarantined_keys: Sequence[str]) -> np.ndarray:
    """The stored hashes of the current records whose keys tonight's rows of the file use
    (staged rows and quarantined ones): a record matched as unchanged must not be among them."""
    target, pk = TARGETS[name]
    found = [
        h
        for (h,) in conn.execute(
            text(f"SELECT t.row_hash FROM {stage_name(name)} s JOIN {target} t ON t.{pk} = s.{pk}")
        )
    ]
    keys = list(dict.fromkeys(quarantined_keys))
    for i in range(0, len(keys), 5000):
        found += [
            h
            for (h,) in conn.execute(
                text(f"SELECT row_hash FROM {target} WHERE {pk} IN :keys").bindparams(
                    bindparam("keys", expanding=True)
                ),
                {"keys": keys[i : i + 5000]},
            )
        ]
    return np.array([h for h in found if h is not None], dtype=np.int64)


def stage_gone(conn: Connection, name: str, hashes: np.ndarray) -> None:
    """Remember the hashes of the file's stored records that tonight's export did not send
    unchanged (the retirement candidates of a file compared row by row)."""
    copy_rows(conn, "stage_gone", ["file", "h"], [(name, int(h)) for h in hashes])
    # statistics for PostgreSQL's planner (temporary tables are never auto-analysed): without
    # them it scanned this table once per treatment row (446 s at 20,000 patients)
    conn.execute(text("ANALYZE stage_gone"))
    conn.execute(text("ANALYZE stage_quarantined_keys"))


def clear_stage(conn: Connection, name: str) -> None:
    """Empty a file's staging table (before reading the file again in full)."""
    conn.execute(text(f"DELETE FROM {stage_name(name)}"))
    conn.execute(text("DELETE FROM stage_quarantined_keys WHERE file = :f"), {"f": name})
