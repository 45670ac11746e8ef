"""One patient's derivation as table rows: ids local to the patient (1, 2, ... per kind of
id), each table's rows as tuples in column order, and the digests (one a table and one of them
all) that let a re-derivation write nothing, or only the tables that changed."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from registry.db.models import (
    DERIVED_MODELS,
    Exposure,
    ExposureSource,
    LineDrug,
    LineOfTherapy,
    PatientSummary,
    Regimen,
    RegimenExposure,
    Relapse,
    RelapseRefractoriness,
    ResponseAssessment,
    TransplantRole,
)
from registry.derive.core import Derivation, latest_end
from registry.derive.model import UNMAPPED_CLASS

# the id columns of each derived table, and the kind of id they hold (shifted from the
# patient's local ids to the registry's when written)
ID_COLUMNS: dict[str, dict[str, str]] = {
    Exposure.__tablename__: {"exposure_id": "exposure_id"},
    ExposureSource.__tablename__: {"exposure_id": "exposure_id"},
    LineOfTherapy.__tablename__: {"line_id": "line_id"},
    Regimen.__tablename__: {"regimen_id": "regimen_id", "line_id": "line_id"},
    RegimenExposure.__tablename__: {"regimen_id": "regimen_id", "exposure_id": "exposure_id"},
    LineDrug.__tablename__: {"line_id": "line_id"},
    TransplantRole.__tablename__: {"line_id": "line_id"},
    Relapse.__tablename__: {"relapse_id": "relapse_id", "line_id": "line_id"},
    RelapseRefractoriness.__tablename__: {"relapse_id": "relapse_id"},
    ResponseAssessment.__tablename__: {"line_id": "line_id"},
    PatientSummary.__tablename__: {"l2_line_id": "line_id"},
}


COLUMNS: dict[str, list[str]] = {
    m.__tablename__: [c.name for c in m.__table__.columns]
    for m in DERIVED_MODELS  # write order: the table digests' order
}


_DIGEST_POS = COLUMNS[PatientSummary.__tablename__].index("derivation_digest")


assert COLUMNS[PatientSummary.__tablename__][_DIGEST_POS + 1] == "table_digests"


TABLE_DIGEST = 16  # hex digits of each table's digest within a patient's digest


_IN_COLUMN_ORDER = {name: itemgetter(*cols) for name, cols in COLUMNS.items()}


assert COLUMNS[ExposureSource.__tablename__] == ["exposure_id", "treatment_key", "patient_key"]


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
        self.rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in COLUMNS}

    def add(self, model: type, **values: Any) -> None:
        name = model.__tablename__  # type: ignore[attr-defined]
        self.rows[name].append(_IN_COLUMN_ORDER[name](values))  # KeyError: a column not given


def patient_rows(d: Derivation, drug_ids: dict[str, int], rules_version: str) -> PatientRows:
    """One patient's derivation as table rows (ids local to the patient, from 1; no derivation
    run yet) and their digest under the rules version."""
    out = _Rows()
    ids = _LocalIds()
    run_id = None
    pk = d.patient_key
    exp_ids = _exposure_rows(out, ids, d, drug_ids)
    line_ids = _line_rows(out, ids, d)
    _regimen_rows(out, ids, d, exp_ids, line_ids)
    _line_drug_rows(out, d, line_ids, drug_ids)
    for key, (role, line) in d.transplant_roles.items():
        out.add(
            TransplantRole,
            transplant_key=key,
            patient_key=pk,
            role=role,
            line_id=line_ids.get(line) if line else None,
            derivation_run_id=run_id,
        )
    _relapse_rows(out, ids, d, line_ids, drug_ids)
    out.add(PatientSummary, **_summary(d, line_ids, run_id), derivation_digest=None, table_digests=None)
    tables = out.rows
    # one digest per table (16 hex digits each, in table order; the writer reads and compares
    # only the stored tables whose digest changed), and one of them all
    per_table = "".join(
        hashlib.blake2b(repr((rules_version, rows)).encode(), digest_size=TABLE_DIGEST // 2).hexdigest()
        for rows in tables.values()
    )
    digest = hashlib.blake2b(per_table.encode(), digest_size=16).hexdigest()
    summary = tables[PatientSummary.__tablename__]
    summary[0] = (*summary[0][:_DIGEST_POS], digest, per_table, *summary[0][_DIGEST_POS + 2 :])
    return PatientRows(d.patient_key, digest, per_table, tables, dict(ids.used))


def _exposure_rows(out: _Rows, ids: _LocalIds, d: Derivation, drug_ids: dict[str, int]) -> dict[int, int]:
    """Exposures and the treatment rows each came from; their local ids by exposure index."""
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
    return exp_ids


def _line_rows(out: _Rows, ids: _LocalIds, d: Derivation) -> dict[int, int]:
    """Lines with their response, and each line's assessments; their local ids by number."""
    run_id = None
    pk = d.patient_key
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
    return line_ids


def _regimen_rows(
    out: _Rows, ids: _LocalIds, d: Derivation, exp_ids: dict[int, int], line_ids: dict[int, int]
) -> None:
    run_id = None
    pk = d.patient_key
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


def _relapse_rows(
    out: _Rows, ids: _LocalIds, d: Derivation, line_ids: dict[int, int], drug_ids: dict[str, int]
) -> None:
    run_id = None
    pk = d.patient_key
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
            event_records=rel.events,
            recorded_after_line_start=rel.recorded_later,
            sources=rel.sources,
            derivation_run_id=run_id,
        )
        for drug, at in sorted(rel.drugs.items()):
            if drug not in drug_ids:  # an unmapped drug (r3): no vocabulary entry to key it by
                continue
            out.add(
                RelapseRefractoriness,
                relapse_id=rel_id,
                drug_id=drug_ids[drug],
                patient_key=pk,
                refractory=at.refractory,
                exposure_days=at.exposure_days,
                free_interval_days=at.free_interval_days,
                last_dose_mg=at.last_dose,
            )


def _line_drug_rows(out: _Rows, d: Derivation, line_ids: dict[int, int], drug_ids: dict[str, int]) -> None:
    """Each drug of each line (vocabulary drugs only): in its first regimen, in its maintenance."""
    for line in d.lines:
        regimens = [r for r in d.regimens if r.line == line.number]
        first_regimen = d.first_regimen(line.number)
        first = set(first_regimen.drugs) if first_regimen else set()
        maintenance = {drug for r in regimens if r.phase == "maintenance" for drug in r.drugs}
        for drug in sorted({drug for r in regimens for drug in r.drugs}):
            if drug not in drug_ids:
                continue
            out.add(
                LineDrug,
                line_id=line_ids[line.number],
                drug_id=drug_ids[drug],
                patient_key=d.patient_key,
                line_number=line.number,
                first_regimen=drug in first,
                maintenance=drug in maintenance,
            )


def _baseline_text(base: dict[str, float | str]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in base.items())[:120]


def _summary(d: Derivation, line_ids: dict[int, int], run_id: int | None) -> dict[str, Any]:
    mt = d.maintenance_regimens
    agents = d.maintenance_agents
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
        "maintenance_agents": ", ".join(agents) or None,
        "maintenance_start": min(r.start for r in mt) if mt else None,
        "maintenance_end": mt_end,
        "maintenance_stop_reason": mt_stop,
        "relapse_date": rel.date if rel else None,
        "l2_line_id": line_ids.get(2) if l2 else None,
        "l2_start": l2.start if l2 else None,
        "l2_first_regimen": l2_reg.name if l2_reg else None,
        "l2_start_rule": l2.start_rule if l2 else None,
        "l2_progression_date": d.progression_after_line_start(2),
        "lines": len(d.lines),
        "day100_response": d.day100_response,
        "last_record_date": d.last_record_date,
        "derivation_run_id": run_id,
    }
