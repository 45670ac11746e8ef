"""Run the derivation for the patients whose rows changed (or for everyone) and store it.

Patients are processed in batches: read their current rows, derive in Python (pure rules in
``core``), delete their previous derived rows and bulk-insert the new ones — all in one
transaction, under the registry's writer lock. Ids of derived rows are allocated here (one
writer at a time), so link tables can be bulk-inserted without ``RETURNING``.
"""

from __future__ import annotations

import datetime as dt
import operator
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
    """What a derivation run did: its id, patients derived and cleared, parameters, rules version."""

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

    Returns
    -------
    DerivationResult
        The derivation run's id, the patients derived and cleared, the parameters and the
        rules version.
    """
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


DERIVED_TABLES = (
    Exposure,
    ExposureSource,
    LineOfTherapy,
    Regimen,
    RegimenExposure,
    TransplantRole,
    Relapse,
    RelapseRefractoriness,
    PatientSummary,
)


class _Rows:
    """Derived rows per table, built by column name and copied in the models' column order."""

    def __init__(self) -> None:
        self.rows: dict[type, list[dict[str, Any]]] = {m: [] for m in DERIVED_TABLES}

    def add(self, model: type, **values: Any) -> None:
        self.rows[model].append(values)

    def copy(self, conn: Connection) -> None:
        for model, rows in self.rows.items():
            columns = [c.name for c in model.__table__.columns]  # type: ignore[attr-defined]
            missing = set(columns) - set(rows[0]) if rows else set()
            assert not missing, (model.__tablename__, missing)  # type: ignore[attr-defined]
            row_tuple = operator.itemgetter(*columns)  # C-speed tuple of the columns, in order
            copy_rows(conn, model.__tablename__, columns, map(row_tuple, rows))  # type: ignore[attr-defined]


def _write(
    conn: Connection, derivations: list[Derivation], run_id: int, ids: _IdAllocator, drug_ids: dict[str, int]
) -> None:
    out = _Rows()
    for d in derivations:
        pk = d.patient_key
        exp_ids = {}
        for e in d.exposures:
            eid = ids.take("exposure_id")
            exp_ids[e.index] = eid
            out.add(
                Exposure,
                exposure_id=eid,
                patient_key=pk,
                drug_id=drug_ids[e.drug],
                start_date=e.start,
                end_date=e.end,
                stop_reason=e.stop_reason,
                last_dose_mg=e.last_dose,
                role=e.role,
                derivation_run_id=run_id,
            )
            for sk in dict.fromkeys(e.source_keys):
                out.add(ExposureSource, exposure_id=eid, treatment_key=sk, patient_key=pk)
        line_ids = {}
        for ln in d.lines:
            lid = ids.take("line_id")
            line_ids[ln.number] = lid
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
                derivation_run_id=run_id,
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
                derivation_run_id=run_id,
            )
            for drug, refr in sorted(rel.refractory.items()):
                out.add(
                    RelapseRefractoriness,
                    relapse_id=rel_id,
                    drug_id=drug_ids[drug],
                    patient_key=pk,
                    refractory=refr,
                )
        out.add(PatientSummary, **_summary(d, line_ids, run_id))
    out.copy(conn)


def _summary(d: Derivation, line_ids: dict[int, int], run_id: int) -> dict[str, Any]:
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
        "lines": len(d.lines),
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
