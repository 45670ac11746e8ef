"""Run the derivation for the patients whose rows changed (or for everyone) and store it.

Patients are processed in batches: read their current rows, derive in Python (pure rules in
``core``) and turn each patient's result into table rows with ids local to the patient and a
digest of each table's rows. Then work out what storing them takes: nothing for a patient whose
digest is the stored one (a re-derivation that changes nothing writes nothing); where the
numbers of exposures, lines, regimens and relapses are unchanged, only the rows that differ in
the tables whose digest changed, keeping their ids; everyone else is replaced in full. The one
writer applies that in one transaction, under the registry's writer lock, and allocates new ids
in patient order, so link tables are bulk-inserted without ``RETURNING`` and the result does
not depend on how the work was split. With ``workers`` > 1, worker processes read, derive and
compare batches in parallel (each with its own read-only connection to the committed rows of
its own patients, which no other batch touches) while the writer writes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Date, Engine, bindparam, delete, func, insert, select, update

from registry.core.config import worker_count
from registry.core.errors import Interrupted
from registry.core.parallel import forked_pool, in_order
from registry.db.bulk import copy_rows, delete_rows, refresh_statistics, update_rows
from registry.db.database import check_writer_lock, lock_work, make_engine, writer_lock
from registry.db.models import (
    DerivationRun,
    Exposure,
    ExposureSource,
    LineOfTherapy,
    Patient,
    PatientSummary,
    Regimen,
    RegimenExposure,
    Relapse,
    RelapseRefractoriness,
    ResponseAssessment,
    TransplantRole,
)
from registry.db.vocabulary import VOCABULARY_VERSION, normalise_drug_name, vocabulary_map
from registry.derive.core import (
    Derivation,
    EventRow,
    PatientInputs,
    TransplantRow,
    TreatmentRow,
    derive_patient,
    latest_end,
)
from registry.derive.model import LINE_INTENTS, UNMAPPED_CLASS
from registry.derive.params import DEFAULT_PARAMETERS, DerivationParameters
from registry.derive.response import MEASURED, Sample

BATCH = 2000
PARALLEL_BATCH = 500  # patients per task handed to a worker process
PARALLEL_MIN = 1000  # fewer patients to derive: one process (starting workers costs more)
DERIVED_BY_PATIENT = (
    ResponseAssessment,
    RelapseRefractoriness,
    Relapse,
    TransplantRole,
    RegimenExposure,
    Regimen,
    LineOfTherapy,
    ExposureSource,
    Exposure,
    PatientSummary,
)


@dataclass(frozen=True)
class DerivationResult:
    """What a derivation run did: its id, patients derived and cleared, parameters, rules version."""

    derivation_run_id: int | None
    patients: int
    retired: int
    parameters: dict[str, Any]
    rules_version: str
    written: int = 0  # patients whose derived rows changed (the others were left as they were)


def derive_pending(
    engine: Engine,
    *,
    all_patients: bool = False,
    params: DerivationParameters = DEFAULT_PARAMETERS,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> DerivationResult:
    """Derive the patients whose rows changed (or, with ``all_patients``, everyone) and store
    the result in one transaction, under the writer lock.

    Parameters
    ----------
    engine
        The registry.
    all_patients
        Re-derive every patient (after a rules change) instead of the flagged ones.
    params
        The rules' parameters; their version is recorded with the run.
    progress
        Called with (patients done, patients to do) after each batch.
    workers
        Processes that read and derive in parallel with the writer (default: the
        REGISTRY_DERIVE_WORKERS setting, else the number of cores); one process below
        ``PARALLEL_MIN`` patients or for an in-memory database. The stored result is the same.

    Returns
    -------
    DerivationResult
        The derivation run's id, the patients derived and cleared, the parameters and the
        rules version.
    """
    try:
        with writer_lock(engine), engine.begin() as conn:
            lock_work(conn)
            result = _derive(conn, all_patients, params, progress, _worker_count(engine, workers))
            check_writer_lock(conn)  # lost: nothing of the derivation commits
            return result
    except KeyboardInterrupt:
        raise Interrupted(
            "interrupted; nothing was changed (the derivation is one transaction; the patients it "
            "had not stored stay flagged for the next one)"
        ) from None


def _worker_count(engine: Engine, workers: int | None) -> int:
    if engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return 1  # another process cannot see an in-memory database
    if workers is None:
        workers = worker_count("derive")
    return max(1, workers)


def _derive(
    conn: Connection,
    all_patients: bool,
    params: DerivationParameters,
    progress: Callable[[int, int], None] | None,
    workers: int = 1,
) -> DerivationResult:
    q = select(Patient.patient_key, Patient.is_current)
    if not all_patients:
        q = q.where(Patient.needs_derivation)
    todo = conn.execute(q.order_by(Patient.patient_key)).all()
    current = [k for k, cur in todo if cur]
    retired = [k for k, cur in todo if not cur]
    version = params.rules_version(VOCABULARY_VERSION)
    if not todo:
        return DerivationResult(None, 0, 0, params.to_json(), version)
    now = dt.datetime.now(dt.UTC)
    res = conn.execute(
        insert(DerivationRun).values(
            started_at=now,
            scope="all" if all_patients else "changed",
            parameters=params.to_json(),
            patients_derived=0,
            rules_version=version,
        )
    )
    pk = res.inserted_primary_key
    assert pk is not None
    run_id = int(pk[0])
    vocab = vocabulary_map(conn)
    ids = _IdAllocator(conn)
    for batch in _batches(retired, BATCH):
        _delete_derived(conn, batch)
    done = written = 0
    touched: Counter[str] = Counter()  # rows written per derived table
    for batch, changes in _derived_batches(conn, current, vocab, params, version, run_id, workers):
        touched.update(_store(conn, changes, run_id, ids))
        written += changes.written
        done += len(batch)
        if progress:
            progress(done, len(current))
    keys = [k for k, _ in todo]
    for batch in _batches(keys, BATCH):
        conn.execute(
            update(Patient)
            .where(Patient.patient_key.in_(bindparam("keys", expanding=True)))
            .values(needs_derivation=False),
            {"keys": batch},
        )
    refresh_statistics(conn, dict(touched))
    conn.execute(
        update(DerivationRun)
        .where(DerivationRun.derivation_run_id == run_id)
        .values(finished_at=dt.datetime.now(dt.UTC), patients_derived=len(current))
    )
    return DerivationResult(run_id, len(current), len(retired), params.to_json(), version, written)


def _batches(items: Sequence[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield list(items[i : i + n])


def _delete_derived(conn: Connection, keys: list[str]) -> None:
    for model in DERIVED_BY_PATIENT:
        col = model.__table__.c.patient_key
        conn.execute(delete(model).where(col.in_(bindparam("keys", expanding=True))), {"keys": keys})


def _as_date(v: Any) -> dt.date | None:
    if v is None or isinstance(v, dt.date):
        return v
    return dt.date.fromisoformat(str(v))


class _Dates(dict[Any, "dt.date | None"]):
    """Stored dates as ``date`` objects, each text parsed once per batch (SQLite returns ISO
    text; a batch's half a million dates hold a few thousand distinct days)."""

    def __missing__(self, v: Any) -> dt.date | None:
        day = self[v] = _as_date(v)
        return day


def _fetch(conn: Connection, sql: str, keys: list[str]) -> list[tuple[Any, ...]]:
    """Rows of a plain SQL query whose ``{keys}`` is replaced by a match on the given patient
    keys, through the DB-API cursor (the derivation reads every source row of its patients:
    the SQLAlchemy row layer cost a third of the reading)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        if conn.dialect.name == "postgresql":
            cur.execute(sql.format(keys="= ANY(%s)"), (keys,))
        else:
            cur.execute(sql.format(keys="IN (" + ", ".join("?" * len(keys)) + ")"), keys)
        return list(cur.fetchall())  # plain tuples on both drivers
    finally:
        cur.close()


# the tests the response rules read (the other laboratory values are kept but judge nothing)
_JUDGED_TESTS_SQL = "(" + ", ".join(f"'{t}'" for t in (*MEASURED, "bm_plasma_cells")) + ")"
_LINE_INTENTS_SQL = "(" + ", ".join(f"'{i}'" for i in sorted(LINE_INTENTS)) + ")"


class _UnmappedNames(dict[str, str]):
    """Recorded names of unmapped drugs, normalised once per batch (the name the rules and the
    stored exposure use: ``Study drug (blinded)`` -> ``study drug``)."""

    def __missing__(self, raw: str) -> str:
        name = self[raw] = normalise_drug_name(raw) or raw.strip().lower()
        return name


def _read_inputs(conn: Connection, keys: list[str], vocab: Any) -> dict[str, PatientInputs]:
    rx: dict[str, list[TreatmentRow]] = {k: [] for k in keys}
    names, classes = vocab.names, vocab.classes
    day = _Dates()
    day[None] = None
    blinded = _UnmappedNames()
    for pkey, tkey, did, start, end, stop, intent, dose, raw in _fetch(
        conn,
        "SELECT patient_key, treatment_key, drug_id, start_date, end_date, stop_reason, intent, dose_mg, "
        # the recorded name only where it can matter: an unmapped drug whose row records an intent
        f"CASE WHEN drug_id IS NULL AND intent IN {_LINE_INTENTS_SQL} THEN drug_raw END "
        "FROM treatments WHERE is_current = TRUE AND patient_key {keys}",
        keys,
    ):
        did = int(did) if did is not None else None
        name, cls = (names.get(did), classes.get(did)) if did else (None, None)
        if raw is not None:  # (r3) a blinded trial drug: a non-steroid drug of class 'unmapped'
            name, cls = blinded[raw], UNMAPPED_CLASS
        rx[pkey].append(
            TreatmentRow(
                tkey,
                name,
                cls,
                day[start],  # type: ignore[arg-type]
                day[end],
                stop,
                intent,
                dose,
                did,
            )
        )
    tx: dict[str, list[TransplantRow]] = {k: [] for k in keys}
    for pkey, tkey, when, kind, tandem in _fetch(
        conn,
        "SELECT patient_key, transplant_key, transplant_date, transplant_type, planned_tandem "
        "FROM transplants WHERE is_current = TRUE AND patient_key {keys}",
        keys,
    ):
        tx[pkey].append(
            TransplantRow(tkey, day[when], kind, None if tandem is None else bool(tandem))  # type: ignore[arg-type]
        )
    ev: dict[str, list[EventRow]] = {k: [] for k in keys}
    for pkey, ekey, when, kind, response in _fetch(
        conn,
        "SELECT patient_key, event_key, event_date, event_type, response "
        "FROM disease_events WHERE is_current = TRUE AND patient_key {keys}",
        keys,
    ):
        ev[pkey].append(EventRow(ekey, day[when], kind, response))  # type: ignore[arg-type]
    labs: dict[str, list[Sample]] = {}
    for pkey, lkey, when, test, value, result in _fetch(
        conn,
        "SELECT patient_key, lab_key, sample_date, test, value, result FROM labs "
        f"WHERE is_current = TRUE AND test IN {_JUDGED_TESTS_SQL} AND patient_key {{keys}}",
        keys,
    ):
        labs.setdefault(pkey, []).append(Sample(day[when], test, value, result, lkey))  # type: ignore[arg-type]
    fu: dict[str, tuple[dt.date | None, dt.date | None]] = {}
    for pkey, contact, death in _fetch(
        conn,
        "SELECT patient_key, last_contact_date, death_date FROM follow_up "
        "WHERE is_current = TRUE AND patient_key {keys}",
        keys,
    ):
        fu[pkey] = (day[contact], day[death])
    cut: dict[str, dt.date | None] = {}
    for pkey, cutoff in _fetch(
        conn,
        "SELECT p.patient_key, s.last_data_cutoff FROM patients p "
        "JOIN sites s ON s.site_code = p.site_code WHERE p.patient_key {keys}",
        keys,
    ):
        cut[pkey] = day[cutoff]
    return {
        k: PatientInputs(
            patient_key=k,
            treatments=tuple(sorted(rx[k], key=lambda t: (t.start, t.key))),
            transplants=tuple(sorted(tx[k], key=lambda t: (t.date, t.key))),
            events=tuple(sorted(ev[k], key=lambda e: (e.date, e.key))),
            labs=tuple(sorted(labs.get(k, ()), key=lambda s: (s.date, s.test, s.key or ""))),
            last_contact=fu.get(k, (None, None))[0],
            death=fu.get(k, (None, None))[1],
            cutoff=cut.get(k),
        )
        for k in keys
    }


def _stored_digests(
    conn: Connection, keys: list[str], version: str
) -> tuple[dict[str, tuple[str | None, str | None]], set[str]]:
    """The digests (of all rows, of each table) of the patients' stored derivations made under
    rules ``version`` (a patient derived under other rules is always written again in full, so
    its rows record this run), and the patients with a stored derivation under any rules
    (every derived patient has a summary row; the others have no derived rows to delete)."""
    found = _fetch(
        conn,
        "SELECT ps.patient_key, ps.derivation_digest, ps.table_digests, r.rules_version "
        "FROM patient_summaries ps JOIN derivation_runs r ON r.derivation_run_id = ps.derivation_run_id "
        "WHERE ps.patient_key {keys}",
        keys,
    )
    return {k: (digest, tables) for k, digest, tables, v in found if v == version}, {r[0] for r in found}


def _derived_batches(
    conn: Connection,
    keys: list[str],
    vocab: Any,
    params: DerivationParameters,
    version: str,
    run_id: int,
    workers: int,
) -> Iterator[tuple[list[str], _Changes]]:
    """(patient keys, what storing their derivation takes) batch by batch, in patient order:
    derived and compared here, or by worker processes reading the committed rows (source rows
    and the stored derivation of their own patients, which no other batch touches) while this
    process writes."""
    if workers <= 1 or len(keys) < PARALLEL_MIN:
        for batch in _batches(keys, BATCH):
            yield batch, _changes(conn, batch, vocab, params, version, run_id)
        return
    _WORKER["parent"] = conn.engine
    url = conn.engine.url.render_as_string(hide_password=False)
    with forked_pool(workers, _worker_start, (url,)) as pool:
        # at most two batches a worker in flight: results the writer has not taken yet wait in
        # memory (with ``imap`` they piled up whenever the workers outran the writer: 1.75 GiB
        # in the writer near the end of a 1,000,000-patient derivation)
        yield from in_order(
            pool,
            _worker_derive,
            _batches(keys, PARALLEL_BATCH),
            lambda batch: (batch, params, version, run_id),
            2 * workers,
        )


_WORKER: dict[str, Any] = {}


def _worker_start(url: str) -> None:
    """A worker process: forget the parent's pooled connections (never use them), open its own."""
    parent = _WORKER.pop("parent", None)
    if parent is not None:
        parent.dispose(close=False)
    engine = make_engine(url)
    with engine.connect() as conn:
        _WORKER.update(engine=engine, vocab=vocabulary_map(conn))


def _worker_derive(task: tuple[list[str], DerivationParameters, str, int]) -> _Changes:
    keys, params, version, run_id = task
    with _WORKER["engine"].connect() as conn:
        return _changes(conn, keys, _WORKER["vocab"], params, version, run_id)


@dataclass
class _Changes:
    """What storing one batch's derivation takes: patients replaced in full (their rows with
    local ids; new ids are the writer's to allocate), and the row changes of the patients
    compared row by row (stored ids, this run's id)."""

    replaced: list[PatientRows] = field(default_factory=list)
    # the replaced patients that have stored rows to delete first (on a first derivation, none:
    # deleting by patient key from tables growing in the same transaction cost the PostgreSQL
    # writer a third of its time, for nothing)
    cleared: list[str] = field(default_factory=list)
    compared: int = 0  # patients whose changed rows are below
    inserts: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {n: [] for n in _COLUMNS})
    updates: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {n: [] for n in _COLUMNS})
    deletes: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {n: [] for n in _COLUMNS})

    @property
    def written(self) -> int:
        """Patients whose derived rows change."""
        return len(self.replaced) + self.compared


def _changes(
    conn: Connection, keys: list[str], vocab: Any, params: DerivationParameters, version: str, run_id: int
) -> _Changes:
    """Derive the patients and work out what storing them takes: nothing for a patient whose
    digest is the stored one; for one derived before under the same rules with as many
    exposures, lines, regimens and relapses as now, the rows that differ in the tables whose
    digest changed (their i-th stored id of each kind stands for local id i); everyone else
    is replaced in full."""
    inputs = _read_inputs(conn, keys, vocab)
    derived = [patient_rows(derive_patient(inputs[k], params), vocab.by_synonym, version) for k in keys]
    stored, has_rows = _stored_digests(conn, keys, version)
    changed = [d for d in derived if stored.get(d.patient_key, ("", None))[0] != d.digest]
    wanted = {
        d.patient_key: _changed_tables(stored[d.patient_key][1], d.table_digests)
        for d in changed
        if d.patient_key in stored
    }
    old = _stored_rows(conn, wanted) if wanted else {}
    out = _Changes()
    for d in changed:
        rows = old.get(d.patient_key)
        if rows is not None and _diff(d, rows, run_id, out.inserts, out.updates, out.deletes):
            out.compared += 1
        else:
            out.replaced.append(d)
            if d.patient_key in has_rows:
                out.cleared.append(d.patient_key)
    return out


# each kind of id and the table that holds it
_ID_OWNERS: dict[str, Any] = {
    "exposure_id": Exposure,
    "line_id": LineOfTherapy,
    "regimen_id": Regimen,
    "relapse_id": Relapse,
}


class _IdAllocator:
    def __init__(self, conn: Connection) -> None:
        self.next: dict[str, int] = {}
        for col, model in _ID_OWNERS.items():
            c = model.__table__.c[col]
            self.next[col] = int(conn.execute(select(func.coalesce(func.max(c), 0))).scalar() or 0) + 1

    def reserve(self, col: str, n: int) -> int:
        """The first of ``n`` consecutive new ids."""
        v = self.next[col]
        self.next[col] = v + n
        return v


DERIVED_TABLES = (
    Exposure,
    ExposureSource,
    LineOfTherapy,
    Regimen,
    RegimenExposure,
    TransplantRole,
    Relapse,
    RelapseRefractoriness,
    ResponseAssessment,
    PatientSummary,
)
# the id columns of each derived table, and the kind of id they hold (shifted from the
# patient's local ids to the registry's when written)
_ID_COLUMNS: dict[str, dict[str, str]] = {
    Exposure.__tablename__: {"exposure_id": "exposure_id"},
    ExposureSource.__tablename__: {"exposure_id": "exposure_id"},
    LineOfTherapy.__tablename__: {"line_id": "line_id"},
    Regimen.__tablename__: {"regimen_id": "regimen_id", "line_id": "line_id"},
    RegimenExposure.__tablename__: {"regimen_id": "regimen_id", "exposure_id": "exposure_id"},
    TransplantRole.__tablename__: {"line_id": "line_id"},
    Relapse.__tablename__: {"relapse_id": "relapse_id", "line_id": "line_id"},
    RelapseRefractoriness.__tablename__: {"relapse_id": "relapse_id"},
    ResponseAssessment.__tablename__: {"line_id": "line_id"},
    PatientSummary.__tablename__: {"l2_line_id": "line_id"},
}
_COLUMNS: dict[str, list[str]] = {
    m.__tablename__: [c.name for c in m.__table__.columns] for m in DERIVED_TABLES
}
_DIGEST_POS = _COLUMNS[PatientSummary.__tablename__].index("derivation_digest")
assert _COLUMNS[PatientSummary.__tablename__][_DIGEST_POS + 1] == "table_digests"
_TABLE_DIGEST = 16  # hex digits of each table's digest within a patient's digest
_IN_COLUMN_ORDER = {name: itemgetter(*cols) for name, cols in _COLUMNS.items()}
assert _COLUMNS[ExposureSource.__tablename__] == ["exposure_id", "treatment_key", "patient_key"]


class _LocalIds:
    """Ids local to one patient's rows: 1, 2, ... per kind."""

    def __init__(self) -> None:
        self.used: dict[str, int] = {}

    def take(self, col: str) -> int:
        self.used[col] = self.used.get(col, 0) + 1
        return self.used[col]


@dataclass
class PatientRows:
    """One patient's derived rows (tuples in each table's column order, local ids, no
    derivation run) and their digests."""

    patient_key: str
    digest: str
    table_digests: str
    tables: dict[str, list[tuple[Any, ...]]]
    ids_used: dict[str, int]


class _Rows:
    """Derived rows per table, built by column name, kept as tuples in column order."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _COLUMNS}

    def add(self, model: type, **values: Any) -> None:
        name = model.__tablename__  # type: ignore[attr-defined]
        self.rows[name].append(_IN_COLUMN_ORDER[name](values))  # KeyError: a column not given


def _write(conn: Connection, derived: list[PatientRows], run_id: int, ids: _IdAllocator) -> Counter[str]:
    """Write patients' rows: their local ids moved to the registry's next free ids, in order."""
    out: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _COLUMNS}
    for d in derived:
        base = {kind: ids.reserve(kind, n) - 1 for kind, n in d.ids_used.items()}
        for name, rows in d.tables.items():
            plan = _PLANS[name]
            for row in rows:
                v = list(row)
                for pos, kind in plan.ids:
                    if v[pos] is not None:
                        v[pos] += base[kind]
                if plan.run is not None:
                    v[plan.run] = run_id
                out[name].append(tuple(v))
    for name, rows in out.items():
        copy_rows(conn, name, _COLUMNS[name], rows)
    return Counter({name: len(rows) for name, rows in out.items()})


def _store(conn: Connection, changes: _Changes, run_id: int, ids: _IdAllocator) -> Counter[str]:
    """Apply a batch's changes: rows of patients compared row by row deleted (children first),
    updated and inserted; patients replaced in full deleted and written with new ids. Returns
    the rows written per table."""
    if changes.cleared:
        _delete_derived(conn, changes.cleared)
    for model in DERIVED_BY_PATIENT:  # children first
        name = model.__tablename__
        delete_rows(conn, name, _PLANS[name].keys, changes.deletes[name])
    for name in _COLUMNS:
        update_rows(conn, name, _COLUMNS[name], _PLANS[name].keys, changes.updates[name])
        copy_rows(conn, name, _COLUMNS[name], changes.inserts[name])
    written = _write(conn, changes.replaced, run_id, ids)
    for name in _COLUMNS:
        written[name] += len(changes.deletes[name]) + len(changes.updates[name]) + len(changes.inserts[name])
    return written


# always read for a patient being compared: the tables holding ids (their ranks map the local
# ids) and the summary (its digest changes)
_ALWAYS_READ = frozenset({*(m.__tablename__ for m in _ID_OWNERS.values()), PatientSummary.__tablename__})


def _changed_tables(before: str | None, now: str) -> frozenset[str]:
    """The tables to read and compare for a patient whose stored digest is ``before``."""
    n = _TABLE_DIGEST
    if before is None or len(before) != len(now):  # a digest of an earlier format: all
        return frozenset(_COLUMNS)
    return _ALWAYS_READ | {
        name for i, name in enumerate(_COLUMNS) if before[i * n : (i + 1) * n] != now[i * n : (i + 1) * n]
    }


@dataclass(frozen=True)
class _TablePlan:
    """How the writer handles one derived table's rows."""

    columns: list[str]
    keys: list[str]  # the primary key's columns
    ids: list[tuple[int, str]]  # (position, kind) of each id column
    run: int | None  # position of derivation_run_id
    key: Callable[[tuple[Any, ...]], Any]  # the primary key of a row (a value when one column)
    dates: list[int]  # positions of date columns
    select: str  # the stored rows of some patients, derivation_run_id read as null


def _table_plan(model: Any) -> _TablePlan:
    name = model.__tablename__
    cols = _COLUMNS[name]
    keys = [cols.index(c.name) for c in model.__table__.primary_key.columns]
    run = cols.index("derivation_run_id") if "derivation_run_id" in cols else None
    selected = ", ".join("NULL" if i == run else c for i, c in enumerate(cols))
    return _TablePlan(
        columns=cols,
        keys=[cols[i] for i in keys],
        ids=[(cols.index(c), kind) for c, kind in _ID_COLUMNS[name].items()],
        run=run,
        key=itemgetter(*keys),
        dates=[i for i, c in enumerate(model.__table__.columns) if isinstance(c.type, Date)],
        select=f"SELECT {selected} FROM {name} WHERE patient_key {{keys}}",
    )


_PLANS = {m.__tablename__: _table_plan(m) for m in DERIVED_TABLES}


def _stored_rows(
    conn: Connection, wanted: dict[str, frozenset[str]]
) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """The patients' stored rows of the tables wanted for each, per patient and table, in column
    order, with null for the derivation run (as in rows not yet written) and dates as dates on
    both engines."""
    out: dict[str, dict[str, list[tuple[Any, ...]]]] = {
        k: {n: [] for n in tables} for k, tables in wanted.items()
    }
    as_text = conn.dialect.name == "sqlite"  # SQLite returns dates as ISO text
    for name, plan in _PLANS.items():
        keys = [k for k, tables in wanted.items() if name in tables]
        if not keys:
            continue
        kpos = plan.columns.index("patient_key")
        dates = plan.dates if as_text else []
        for row in _fetch(conn, plan.select, keys):
            if dates:
                v = list(row)
                for i in dates:
                    if v[i] is not None:
                        v[i] = dt.date.fromisoformat(v[i])
                row = tuple(v)
            out[row[kpos]][name].append(row)
    return out


def _diff(
    d: PatientRows,
    old: dict[str, list[tuple[Any, ...]]],
    run_id: int,
    inserts: dict[str, list[tuple[Any, ...]]],
    updates: dict[str, list[tuple[Any, ...]]],
    deletes: dict[str, list[tuple[Any, ...]]],
) -> bool:
    """Add the row changes that turn ``old`` into the patient's new rows, keeping the stored
    ids; False (nothing added) when the number of ids of some kind differs."""
    registry_ids: dict[str, list[int]] = {}
    for kind, model in _ID_OWNERS.items():
        table = model.__tablename__
        pos = _COLUMNS[table].index(kind)
        stored_ids = sorted(row[pos] for row in old[table])
        if len(stored_ids) != d.ids_used.get(kind, 0):
            return False
        registry_ids[kind] = [0, *stored_ids]  # local id i -> registry_ids[kind][i]
    for name, rows in d.tables.items():
        if name not in old:
            continue  # its digest is unchanged: so are its rows
        plan = _PLANS[name]
        before = {plan.key(r): r for r in old[name]}
        for row in rows:
            if plan.ids:
                v = list(row)
                for pos, kind in plan.ids:
                    if v[pos] is not None:
                        v[pos] = registry_ids[kind][v[pos]]
                row = tuple(v)
            was = before.pop(plan.key(row), None)
            if was == row:
                continue
            if plan.run is not None:
                row = (*row[: plan.run], run_id, *row[plan.run + 1 :])
            (inserts if was is None else updates)[name].append(row)
        if len(plan.keys) == 1:
            deletes[name].extend((k,) for k in before)
        else:
            deletes[name].extend(before)
    return True


def patient_rows(d: Derivation, drug_ids: dict[str, int], rules_version: str) -> PatientRows:
    """One patient's derivation as table rows (ids local to the patient, from 1; no derivation
    run yet) and their digest under the rules version."""
    out = _Rows()
    ids = _LocalIds()
    run_id = None
    pk = d.patient_key
    exp_ids = {}
    sources = out.rows[ExposureSource.__tablename__]
    for e in d.exposures:
        eid = ids.take("exposure_id")
        exp_ids[e.index] = eid
        out.add(
            Exposure,
            exposure_id=eid,
            patient_key=pk,
            drug_id=e.drug_id if e.drug_class == UNMAPPED_CLASS else drug_ids[e.drug],
            start_date=e.start,
            end_date=e.end,
            stop_reason=e.stop_reason,
            last_dose_mg=e.last_dose,
            role=e.role,
            unmapped_drug=e.drug if e.drug_class == UNMAPPED_CLASS else None,
            derivation_run_id=run_id,
        )
        # the most numerous rows (one per treatment row): tuples in column order directly
        sources.extend([(eid, sk, pk) for sk in dict.fromkeys(e.source_keys)])
    line_ids = {}
    outcomes = {o.line: o for o in d.responses}
    for ln in d.lines:
        lid = ids.take("line_id")
        line_ids[ln.number] = lid
        o = outcomes.get(ln.number)
        judged = o.labs if o is not None and o.basis == "labs" else None
        out.add(
            LineOfTherapy,
            line_id=lid,
            patient_key=pk,
            line_number=ln.number,
            start_date=ln.start,
            end_date=ln.end,
            end_reason=ln.end_reason,
            start_rule=ln.start_rule,
            includes_index_transplant=ln.includes_index_transplant,
            best_response=o.best if o else None,
            best_response_date=o.best_date if o else None,
            response_basis=o.basis if o else None,
            response_date=o.response_date if o else None,
            best_response_unconfirmed=judged.best_unconfirmed if judged else None,
            measurable=",".join(judged.measurable) if judged else None,
            response_baseline=_baseline_text(judged.baseline) if judged else None,
            lab_progression_date=judged.progression if judged else None,
            lab_progression_basis=judged.progression_basis[:200]
            if judged and judged.progression_basis
            else None,
            derivation_run_id=run_id,
        )
        if judged is None:
            continue
        for a in judged.assessments:
            v = a.values
            out.add(
                ResponseAssessment,
                line_id=lid,
                assessment_date=a.date,
                patient_key=pk,
                category=a.category,
                confirmed=a.confirmed or (a.category == "PD" and a.date == judged.progression),
                basis=a.basis[:200],
                serum_m_protein=v.get("serum"),
                urine_m_protein=v.get("urine"),
                dflc=v.get("dflc"),
                bm_plasma_cells=v.get("marrow"),
            )
    for r in d.regimens:
        rid = ids.take("regimen_id")
        out.add(
            Regimen,
            regimen_id=rid,
            patient_key=pk,
            line_id=line_ids[r.line],
            regimen_number=r.number,
            phase=r.phase,
            name=r.name[:400],
            start_date=r.start,
            end_date=r.end,
            stop_reason=r.stop_reason,
            contains_lenalidomide=r.contains_lenalidomide,
            acronym=r.acronym,
            backbone=r.backbone[:120],
            derivation_run_id=run_id,
        )
        for idx, continued in r.exposures:
            out.add(
                RegimenExposure,
                regimen_id=rid,
                exposure_id=exp_ids[idx],
                patient_key=pk,
                continued=continued,
            )
    for key, (role, line) in d.transplant_roles.items():
        out.add(
            TransplantRole,
            transplant_key=key,
            patient_key=pk,
            role=role,
            line_id=line_ids.get(line) if line else None,
            derivation_run_id=run_id,
        )
    for rel in d.relapses:
        rel_id = ids.take("relapse_id")
        out.add(
            Relapse,
            relapse_id=rel_id,
            patient_key=pk,
            relapse_date=rel.date,
            sequence=rel.sequence,
            source=rel.source,
            source_key=rel.source_key,
            after_index_transplant=rel.after_index_transplant,
            is_first_after_index=rel.is_first_after_index,
            line_id=line_ids.get(rel.line) if rel.line else None,
            len_refractory=rel.len_refractory,
            len_last_dose_mg=rel.len_last_dose,
            len_exposure_days=rel.len_exposure_days,
            len_free_interval_days=rel.len_free_interval_days,
            event_records=rel.events,
            recorded_after_line_start=rel.recorded_later,
            sources=rel.sources,
            derivation_run_id=run_id,
        )
        for drug, refr in sorted(rel.refractory.items()):
            if drug not in drug_ids:  # an unmapped drug (r3): no vocabulary entry to key it by
                continue
            out.add(
                RelapseRefractoriness,
                relapse_id=rel_id,
                drug_id=drug_ids[drug],
                patient_key=pk,
                refractory=refr,
            )
    out.add(PatientSummary, **_summary(d, line_ids, run_id), derivation_digest=None, table_digests=None)
    tables = out.rows
    # one digest per table (16 hex digits each, in table order; the writer reads and compares
    # only the stored tables whose digest changed), and one of them all
    per_table = "".join(
        hashlib.blake2b(repr((rules_version, rows)).encode(), digest_size=_TABLE_DIGEST // 2).hexdigest()
        for rows in tables.values()
    )
    digest = hashlib.blake2b(per_table.encode(), digest_size=16).hexdigest()
    summary = tables[PatientSummary.__tablename__]
    summary[0] = (*summary[0][:_DIGEST_POS], digest, per_table, *summary[0][_DIGEST_POS + 2 :])
    return PatientRows(d.patient_key, digest, per_table, tables, dict(ids.used))


def _baseline_text(base: dict[str, float | str]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in base.items())[:120]


def _summary(d: Derivation, line_ids: dict[int, int], run_id: int | None) -> dict[str, Any]:
    mt = d.maintenance_regimens
    agents = sorted({drug for r in mt for drug in r.drugs})
    mt_end: dt.date | None = None
    mt_stop = None
    if mt:
        mt_end = latest_end(r.end for r in mt)
        last = max(mt, key=lambda r: (r.end or dt.date.max, r.start))
        mt_stop = "ongoing" if mt_end is None else last.stop_reason
    rel = d.relapse_after_index
    l2 = d.line(2)
    l2_reg = d.first_regimen(2)
    return {
        "patient_key": d.patient_key,
        "index_transplant_key": d.index_transplant.key if d.index_transplant else None,
        "index_transplant_date": d.index_transplant.date if d.index_transplant else None,
        "tandem_transplant_date": d.tandem_transplant.date if d.tandem_transplant else None,
        "maintenance": bool(mt),
        "lenalidomide_maintenance": d.lenalidomide_maintenance,
        "maintenance_agents": ", ".join(agents) or None,
        "maintenance_start": min(r.start for r in mt) if mt else None,
        "maintenance_end": mt_end,
        "maintenance_stop_reason": mt_stop,
        "relapse_date": rel.date if rel else None,
        "l2_line_id": line_ids.get(2) if l2 else None,
        "l2_start": l2.start if l2 else None,
        "l2_first_regimen": l2_reg.name if l2_reg else None,
        "l2_lenalidomide": bool(l2_reg and l2_reg.contains_lenalidomide),
        "l2_start_rule": l2.start_rule if l2 else None,
        "l2_progression_date": d.progression_after_line_start(2),
        "lines": len(d.lines),
        "day100_response": d.day100_response,
        "derivation_run_id": run_id,
    }


@dataclass(frozen=True)
class DerivationStatus:
    """How the registry's derived data relate to the rules this code implements."""

    rules_version: str
    derived: int  # current patients with derived data
    stale: int  # ... derived under another rules version (or before versions were recorded)
    pending: int  # current patients whose rows changed since their last derivation
    stale_versions: dict[str, int]  # version ('unrecorded' when null) -> patients

    @property
    def message(self) -> str | None:
        """What the operator should do, or None when everything is derived under these rules."""
        parts = []
        if self.stale:
            olds = ", ".join(f"{v}: {n}" for v, n in sorted(self.stale_versions.items()))
            parts.append(
                f"{self.stale} patients were derived under older rules ({olds}; "
                f"current {self.rules_version}): run `registry derive --all`"
            )
        if self.pending:
            parts.append(f"{self.pending} patients await derivation: run `registry derive`")
        return "; ".join(parts) or None


def derivation_status(
    conn: Connection, params: DerivationParameters = DEFAULT_PARAMETERS
) -> DerivationStatus:
    """How the stored derivations relate to the rules of this code: patients derived under
    another rules version, and patients waiting for derivation."""
    version = params.rules_version(VOCABULARY_VERSION)
    counts = conn.execute(
        select(DerivationRun.rules_version, func.count())
        .select_from(PatientSummary)
        .join(DerivationRun, DerivationRun.derivation_run_id == PatientSummary.derivation_run_id)
        .group_by(DerivationRun.rules_version)
    ).all()
    stale_versions = {(v or "unrecorded"): int(n) for v, n in counts if v != version}
    pending = conn.execute(
        select(func.count()).select_from(Patient).where(Patient.is_current, Patient.needs_derivation)
    ).scalar()
    return DerivationStatus(
        rules_version=version,
        derived=sum(int(n) for _, n in counts),
        stale=sum(stale_versions.values()),
        pending=int(pending or 0),
        stale_versions=stale_versions,
    )
