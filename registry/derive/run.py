"""Run the derivation for the patients whose rows changed (or for everyone) and store it.

Patients are processed in batches: read their current rows, derive in Python (pure rules in
``core``), delete their previous derived rows and bulk-insert the new ones — all in one
transaction, under the registry's writer lock. Ids of derived rows are allocated here (one
writer at a time), so link tables can be bulk-inserted without ``RETURNING``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from registry.db.bulk import copy_rows
from registry.db.database import writer_lock
from registry.db.models import (
    DerivationRun,
    DiseaseEvent,
    Exposure,
    ExposureSource,
    FollowUp,
    LineOfTherapy,
    Patient,
    PatientSummary,
    Regimen,
    RegimenExposure,
    Relapse,
    RelapseRefractoriness,
    Site,
    Transplant,
    TransplantRole,
    Treatment,
)
from registry.db.vocabulary import VOCABULARY_VERSION, vocabulary_map
from registry.derive.core import (
    Derivation,
    EventRow,
    PatientInputs,
    TransplantRow,
    TreatmentRow,
    derive_patient,
    latest_end,
)
from registry.derive.params import DEFAULT_PARAMETERS, DerivationParameters

BATCH = 2000
DERIVED_BY_PATIENT = (
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
    derivation_run_id: int | None
    patients: int
    retired: int
    parameters: dict[str, Any]
    rules_version: str


def derive_pending(
    engine: Engine,
    *,
    all_patients: bool = False,
    params: DerivationParameters = DEFAULT_PARAMETERS,
    progress: Callable[[int, int], None] | None = None,
) -> DerivationResult:
    with writer_lock(engine), engine.begin() as conn:
        return _derive(conn, all_patients, params, progress)


def _derive(
    conn: Connection,
    all_patients: bool,
    params: DerivationParameters,
    progress: Callable[[int, int], None] | None,
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
    done = 0
    for batch in _batches(current, BATCH):
        inputs = _read_inputs(conn, batch, vocab)
        derivations = [derive_patient(inputs[k], params) for k in batch]
        _delete_derived(conn, batch)
        _write(conn, derivations, run_id, ids, vocab.by_synonym)
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
    conn.execute(
        update(DerivationRun)
        .where(DerivationRun.derivation_run_id == run_id)
        .values(finished_at=dt.datetime.now(dt.UTC), patients_derived=len(current))
    )
    return DerivationResult(run_id, len(current), len(retired), params.to_json(), version)


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


def _read_inputs(conn: Connection, keys: list[str], vocab: Any) -> dict[str, PatientInputs]:
    p = {"keys": keys}
    inkeys: Any = bindparam("keys", expanding=True)
    rx: dict[str, list[TreatmentRow]] = {k: [] for k in keys}
    names, classes = vocab.names, vocab.classes
    # plain tuples (not Row attribute access): this loop sees every treatment row
    for pkey, tkey, did, start, end, stop, intent, dose in conn.execute(
        select(
            Treatment.patient_key,
            Treatment.treatment_key,
            Treatment.drug_id,
            Treatment.start_date,
            Treatment.end_date,
            Treatment.stop_reason,
            Treatment.intent,
            Treatment.dose_mg,
        ).where(Treatment.patient_key.in_(inkeys), Treatment.is_current),
        p,
    ):
        did = int(did) if did is not None else None
        rx[pkey].append(
            TreatmentRow(
                tkey,
                names.get(did) if did else None,
                classes.get(did) if did else None,
                _as_date(start),  # type: ignore[arg-type]
                _as_date(end),
                stop,
                intent,
                dose,
                did,
            )
        )
    tx: dict[str, list[TransplantRow]] = {k: [] for k in keys}
    for trow in conn.execute(
        select(
            Transplant.patient_key,
            Transplant.transplant_key,
            Transplant.transplant_date,
            Transplant.transplant_type,
            Transplant.planned_tandem,
        ).where(Transplant.patient_key.in_(inkeys), Transplant.is_current),
        p,
    ):
        tx[trow.patient_key].append(
            TransplantRow(
                trow.transplant_key,
                _as_date(trow.transplant_date),  # type: ignore[arg-type]
                trow.transplant_type,
                trow.planned_tandem,
            )
        )
    ev: dict[str, list[EventRow]] = {k: [] for k in keys}
    for erow in conn.execute(
        select(
            DiseaseEvent.patient_key, DiseaseEvent.event_key, DiseaseEvent.event_date, DiseaseEvent.event_type
        ).where(DiseaseEvent.patient_key.in_(inkeys), DiseaseEvent.is_current),
        p,
    ):
        ev[erow.patient_key].append(EventRow(erow.event_key, _as_date(erow.event_date), erow.event_type))  # type: ignore[arg-type]
    fu: dict[str, tuple[dt.date | None, dt.date | None]] = {}
    for frow in conn.execute(
        select(FollowUp.patient_key, FollowUp.last_contact_date, FollowUp.death_date).where(
            FollowUp.patient_key.in_(inkeys), FollowUp.is_current
        ),
        p,
    ):
        fu[frow.patient_key] = (_as_date(frow.last_contact_date), _as_date(frow.death_date))
    cut: dict[str, dt.date | None] = {}
    for crow in conn.execute(
        select(Patient.patient_key, Site.last_data_cutoff)
        .join(Site, Site.site_code == Patient.site_code)
        .where(Patient.patient_key.in_(inkeys)),
        p,
    ):
        cut[crow.patient_key] = _as_date(crow.last_data_cutoff)
    return {
        k: PatientInputs(
            patient_key=k,
            treatments=tuple(sorted(rx[k], key=lambda t: (t.start, t.key))),
            transplants=tuple(sorted(tx[k], key=lambda t: (t.date, t.key))),
            events=tuple(sorted(ev[k], key=lambda e: (e.date, e.key))),
            last_contact=fu.get(k, (None, None))[0],
            death=fu.get(k, (None, None))[1],
            cutoff=cut.get(k),
        )
        for k in keys
    }


class _IdAllocator:
    def __init__(self, conn: Connection) -> None:
        self.next: dict[str, int] = {}
        for model, col in (
            (Exposure, "exposure_id"),
            (LineOfTherapy, "line_id"),
            (Regimen, "regimen_id"),
            (Relapse, "relapse_id"),
        ):
            c = model.__table__.c[col]
            self.next[col] = int(conn.execute(select(func.coalesce(func.max(c), 0))).scalar() or 0) + 1

    def take(self, col: str) -> int:
        v = self.next[col]
        self.next[col] = v + 1
        return v


def _write(
    conn: Connection, derivations: list[Derivation], run_id: int, ids: _IdAllocator, drug_ids: dict[str, int]
) -> None:
    rows: dict[str, list[tuple[Any, ...]]] = {
        t: []
        for t in (
            "exposures",
            "exposure_sources",
            "lines_of_therapy",
            "regimens",
            "regimen_exposures",
            "transplant_roles",
            "relapses",
            "relapse_refractoriness",
            "patient_summaries",
        )
    }
    for d in derivations:
        pk = d.patient_key
        exp_ids = {}
        for e in d.exposures:
            eid = ids.take("exposure_id")
            exp_ids[e.index] = eid
            rows["exposures"].append(
                (eid, pk, drug_ids[e.drug], e.start, e.end, e.stop_reason, e.last_dose, e.role, run_id)
            )
            for sk in dict.fromkeys(e.source_keys):
                rows["exposure_sources"].append((eid, sk, pk))
        line_ids = {}
        for ln in d.lines:
            lid = ids.take("line_id")
            line_ids[ln.number] = lid
            rows["lines_of_therapy"].append(
                (
                    lid,
                    pk,
                    ln.number,
                    ln.start,
                    ln.end,
                    ln.end_reason,
                    ln.start_rule,
                    ln.includes_index_transplant,
                    run_id,
                )
            )
        for r in d.regimens:
            rid = ids.take("regimen_id")
            rows["regimens"].append(
                (
                    rid,
                    pk,
                    line_ids[r.line],
                    r.number,
                    r.phase,
                    r.name[:400],
                    r.start,
                    r.end,
                    r.stop_reason,
                    r.contains_lenalidomide,
                    run_id,
                )
            )
            for idx, continued in r.exposures:
                rows["regimen_exposures"].append((rid, exp_ids[idx], pk, continued))
        for key, (role, line) in d.transplant_roles.items():
            rows["transplant_roles"].append((key, pk, role, line_ids.get(line) if line else None, run_id))
        for rel in d.relapses:
            rel_id = ids.take("relapse_id")
            rows["relapses"].append(
                (
                    rel_id,
                    pk,
                    rel.date,
                    rel.sequence,
                    rel.source,
                    rel.source_key,
                    rel.after_index_transplant,
                    rel.is_first_after_index,
                    line_ids.get(rel.line) if rel.line else None,
                    rel.len_refractory,
                    rel.len_last_dose,
                    rel.len_exposure_days,
                    rel.len_free_interval_days,
                    run_id,
                )
            )
            for drug, refr in sorted(rel.refractory.items()):
                rows["relapse_refractoriness"].append((rel_id, drug_ids[drug], pk, refr))
        rows["patient_summaries"].append(_summary_row(d, line_ids, run_id))
    for table, data in rows.items():
        copy_rows(conn, table, COLUMNS[table], data)


COLUMNS = {
    "exposures": [
        "exposure_id",
        "patient_key",
        "drug_id",
        "start_date",
        "end_date",
        "stop_reason",
        "last_dose_mg",
        "role",
        "derivation_run_id",
    ],
    "exposure_sources": ["exposure_id", "treatment_key", "patient_key"],
    "lines_of_therapy": [
        "line_id",
        "patient_key",
        "line_number",
        "start_date",
        "end_date",
        "end_reason",
        "start_rule",
        "includes_index_transplant",
        "derivation_run_id",
    ],
    "regimens": [
        "regimen_id",
        "patient_key",
        "line_id",
        "regimen_number",
        "phase",
        "name",
        "start_date",
        "end_date",
        "stop_reason",
        "contains_lenalidomide",
        "derivation_run_id",
    ],
    "regimen_exposures": ["regimen_id", "exposure_id", "patient_key", "continued"],
    "transplant_roles": ["transplant_key", "patient_key", "role", "line_id", "derivation_run_id"],
    "relapses": [
        "relapse_id",
        "patient_key",
        "relapse_date",
        "sequence",
        "source",
        "source_key",
        "after_index_transplant",
        "is_first_after_index",
        "line_id",
        "len_refractory",
        "len_last_dose_mg",
        "len_exposure_days",
        "len_free_interval_days",
        "derivation_run_id",
    ],
    "relapse_refractoriness": ["relapse_id", "drug_id", "patient_key", "refractory"],
    "patient_summaries": [
        "patient_key",
        "index_transplant_key",
        "index_transplant_date",
        "tandem_transplant_date",
        "maintenance",
        "lenalidomide_maintenance",
        "maintenance_agents",
        "maintenance_start",
        "maintenance_end",
        "maintenance_stop_reason",
        "relapse_date",
        "l2_line_id",
        "l2_start",
        "l2_first_regimen",
        "l2_lenalidomide",
        "lines",
        "derivation_run_id",
    ],
}


def _summary_row(d: Derivation, line_ids: dict[int, int], run_id: int) -> tuple[Any, ...]:
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
    return (
        d.patient_key,
        d.index_transplant.key if d.index_transplant else None,
        d.index_transplant.date if d.index_transplant else None,
        d.tandem_transplant.date if d.tandem_transplant else None,
        bool(mt),
        d.lenalidomide_maintenance,
        ", ".join(agents) or None,
        min(r.start for r in mt) if mt else None,
        mt_end,
        mt_stop,
        rel.date if rel else None,
        line_ids.get(2) if l2 else None,
        l2.start if l2 else None,
        l2_reg.name if l2_reg else None,
        bool(l2_reg and l2_reg.contains_lenalidomide),
        len(d.lines),
        run_id,
    )


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
