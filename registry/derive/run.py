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
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Date, Engine, bindparam, delete, func, insert, select, update

from registry.core.collect import fewer_collections
from registry.core.config import workers_or_cores
from registry.core.errors import Interrupted
from registry.core.parallel import forked_pool, in_order
from registry.db.bulk import copy_rows, delete_rows, refresh_statistics, update_rows
from registry.db.database import check_writer_lock, lock_work, make_engine, writer_lock
from registry.db.models import (
    DERIVED_MODELS,
    DERIVED_TABLES,
    DerivationRun,
    Exposure,
    LineOfTherapy,
    Patient,
    PatientSummary,
    Regimen,
    Relapse,
)
from registry.db.vocabulary import VOCABULARY_VERSION, vocabulary_map
from registry.derive.core import (
    derive_patient,
)
from registry.derive.inputs import fetch, read_inputs
from registry.derive.params import DEFAULT_PARAMETERS, DerivationParameters
from registry.derive.rows import COLUMNS as _COLUMNS
from registry.derive.rows import ID_COLUMNS as _ID_COLUMNS
from registry.derive.rows import TABLE_DIGEST as _TABLE_DIGEST
from registry.derive.rows import PatientRows, patient_rows

BATCH = 2000
PARALLEL_BATCH = 500  # patients per task handed to a worker process
PARALLEL_MIN = 1000  # fewer patients to derive: one process (starting workers costs more)
# the derived tables, children before parents: the order to delete a patient's rows in
DERIVED_BY_PATIENT = tuple(next(m for m in DERIVED_MODELS if m.__tablename__ == n) for n in DERIVED_TABLES)


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
        with writer_lock(engine), engine.begin() as conn, fewer_collections():
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
    return max(1, workers_or_cores(workers))


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


def _stored_digests(
    conn: Connection, keys: list[str], version: str
) -> tuple[dict[str, tuple[str | None, str | None]], set[str]]:
    """The digests (of all rows, of each table) of the patients' stored derivations made under
    rules ``version`` (a patient derived under other rules is always written again in full, so
    its rows record this run), and the patients with a stored derivation under any rules
    (every derived patient has a summary row; the others have no derived rows to delete)."""
    found = fetch(
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
    inputs = read_inputs(conn, keys, vocab)
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


def _write(conn: Connection, derived: list[PatientRows], run_id: int, ids: _IdAllocator) -> Counter[str]:
    """Write patients' rows: their local ids moved to the registry's next free ids, in order."""
    out: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _COLUMNS}
    for d in derived:
        base = {kind: ids.reserve(kind, n) - 1 for kind, n in d.ids_used.items()}
        for name, rows in d.tables.items():
            shift = _PLANS[name].shift
            out[name] += [shift(row, base, run_id) for row in rows]
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
    # (row, first id of each kind less one, run) -> the row as written: its ids moved, its run set
    shift: Callable[[tuple[Any, ...], dict[str, int], int], tuple[Any, ...]]


def _table_plan(model: Any) -> _TablePlan:
    name = model.__tablename__
    cols = _COLUMNS[name]
    keys = [cols.index(c.name) for c in model.__table__.primary_key.columns]
    run = cols.index("derivation_run_id") if "derivation_run_id" in cols else None
    selected = ", ".join("NULL" if i == run else c for i, c in enumerate(cols))
    ids = [(cols.index(c), kind) for c, kind in _ID_COLUMNS[name].items()]
    return _TablePlan(
        columns=cols,
        keys=[cols[i] for i in keys],
        ids=ids,
        run=run,
        key=itemgetter(*keys),
        dates=[i for i, c in enumerate(model.__table__.columns) if isinstance(c.type, Date)],
        select=f"SELECT {selected} FROM {name} WHERE patient_key {{keys}}",
        shift=_shifter(len(cols), dict(ids), run),
    )


def _shifter(n: int, ids: dict[int, str], run: int | None) -> Callable[..., tuple[Any, ...]]:
    """A function building a row as written from a row as derived, compiled from the table's
    column positions (one tuple display a row: the writer moves a million rows' ids on a first
    derivation, and a loop over each row's id columns cost it 3 of its 10 seconds)."""
    parts = []
    for i in range(n):
        if i in ids:
            parts.append(f"(r[{i}] + b[{ids[i]!r}] if r[{i}] is not None else None)")
        else:
            parts.append("run" if i == run else f"r[{i}]")
    shift: Callable[..., tuple[Any, ...]] = eval(
        f"lambda r, b, run: ({', '.join(parts)},)"
    )  # from column positions only
    return shift


_PLANS = {m.__tablename__: _table_plan(m) for m in DERIVED_MODELS}


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
        for row in fetch(conn, plan.select, keys):
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
