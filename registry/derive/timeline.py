"""A readable timeline of one patient (``registry patient show``): what was loaded and how the
derivation classified it — so an admin can see why."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from registry.db.history import resolve_patient_key
from registry.db.models import (
    DiseaseEvent,
    Drug,
    Exposure,
    FollowUp,
    LineOfTherapy,
    Patient,
    PatientSummary,
    Regimen,
    Relapse,
    RelapseRefractoriness,
    Transplant,
    TransplantRole,
)


@dataclass(frozen=True)
class TimelineEntry:
    """One dated line of a patient's story."""

    date: dt.date
    kind: str
    text: str


def patient_timeline(engine: Engine, patient_key: str) -> tuple[dict[str, object], list[TimelineEntry]]:
    """One patient's registry record for ``registry patient show``: a header of facts and the
    dated story (diagnosis, lines, regimens, transplants with their roles, events, relapses,
    death). ``patient_key`` may be a unique prefix of the pseudonym; ``NotFound`` otherwise."""
    with engine.connect() as conn:
        patient_key = resolve_patient_key(conn, patient_key)
        p = conn.execute(select(Patient).where(Patient.patient_key == patient_key)).one()
        head: dict[str, object] = {
            "patient_key": p.patient_key,
            "site": p.site_code,
            "sex": p.sex,
            "birth_year": p.birth_date.year,
            "iss": p.iss_stage,
            "cytogenetic_risk": p.cytogenetic_risk,
            "current": p.is_current,
        }
        entries = [TimelineEntry(p.diagnosis_date, "diagnosis", "multiple myeloma diagnosed")]
        entries += _transplants(conn, patient_key)
        lines = {
            ln.line_id: ln
            for ln in conn.execute(select(LineOfTherapy).where(LineOfTherapy.patient_key == patient_key))
        }
        entries += _lines(lines)
        entries += _regimens(conn, patient_key, lines)
        entries += _events(conn, patient_key)
        entries += _relapses(conn, patient_key)
        n_exp = conn.execute(select(Exposure.exposure_id).where(Exposure.patient_key == patient_key)).all()
        head["exposures"] = len(n_exp)
        fu = conn.execute(select(FollowUp).where(FollowUp.patient_key == patient_key)).first()
        if fu and fu.death_date:
            entries.append(
                TimelineEntry(fu.death_date, "death", f"died ({fu.cause_of_death or 'cause not recorded'})")
            )
        elif fu:
            entries.append(TimelineEntry(fu.last_contact_date, "follow-up", "last contact, alive"))
        s = conn.execute(select(PatientSummary).where(PatientSummary.patient_key == patient_key)).first()
        if s:
            head["maintenance_agents"] = s.maintenance_agents
            head["second_line"] = s.l2_first_regimen
    order = {"diagnosis": 0, "line": 1, "transplant": 2, "regimen": 3, "event": 4, "labs": 5, "relapse": 6}
    entries.sort(key=lambda e: (e.date, order.get(e.kind, 9)))
    return head, entries


def _transplants(conn: Connection, patient_key: str) -> list[TimelineEntry]:
    roles = dict(
        conn.execute(
            select(TransplantRole.transplant_key, TransplantRole.role).where(
                TransplantRole.patient_key == patient_key
            )
        ).all()
    )
    return [
        TimelineEntry(
            t.transplant_date,
            "transplant",
            f"{t.transplant_type} transplant — derived role: {roles.get(t.transplant_key, 'not derived')}",
        )
        for t in conn.execute(
            select(Transplant).where(Transplant.patient_key == patient_key, Transplant.is_current)
        )
    ]


def _lines(lines: dict[int, Any]) -> list[TimelineEntry]:
    """Each line with its start rule, end and response; its laboratory progression."""
    out = []
    for ln in lines.values():
        end = ln.end_date.isoformat() if ln.end_date else "ongoing"
        if ln.response_basis in (None, "not_evaluable"):
            response = "response not evaluable"
        else:
            response = f"best response {ln.best_response or 'none confirmed'} ({ln.response_basis})"
        out.append(
            TimelineEntry(
                ln.start_date,
                "line",
                f"LINE {ln.line_number} starts (rule: {ln.start_rule}); "
                f"ends {end} ({ln.end_reason or '-'}); {response}",
            )
        )
        if ln.lab_progression_date is not None:
            out.append(
                TimelineEntry(
                    ln.lab_progression_date,
                    "labs",
                    f"  line {ln.line_number} progression in the laboratory series: "
                    f"{ln.lab_progression_basis}",
                )
            )
    return out


def _regimens(conn: Connection, patient_key: str, lines: dict[int, Any]) -> list[TimelineEntry]:
    out = []
    for r in conn.execute(select(Regimen).where(Regimen.patient_key == patient_key)):
        end = r.end_date.isoformat() if r.end_date else "ongoing"
        line = lines[r.line_id].line_number
        text = f"  line {line} {r.phase}: {r.name} (to {end}, {r.stop_reason or '-'})"
        out.append(TimelineEntry(r.start_date, "regimen", text))
    return out


def _events(conn: Connection, patient_key: str) -> list[TimelineEntry]:
    return [
        TimelineEntry(ev.event_date, "event", f"{ev.event_type}{f' {ev.response}' if ev.response else ''}")
        for ev in conn.execute(
            select(DiseaseEvent).where(DiseaseEvent.patient_key == patient_key, DiseaseEvent.is_current)
        )
    ]


def _relapses(conn: Connection, patient_key: str) -> list[TimelineEntry]:
    out = []
    refractory_to: dict[int, list[str]] = {}
    for relapse_id, drug in conn.execute(
        select(RelapseRefractoriness.relapse_id, Drug.generic_name)
        .join(Drug, Drug.drug_id == RelapseRefractoriness.drug_id)
        .where(RelapseRefractoriness.patient_key == patient_key, RelapseRefractoriness.refractory)
        .order_by(Drug.generic_name)
    ):
        refractory_to.setdefault(relapse_id, []).append(drug)
    for rel in conn.execute(select(Relapse).where(Relapse.patient_key == patient_key)):
        flag = " — FIRST RELAPSE AFTER INDEX TRANSPLANT" if rel.is_first_after_index else ""
        drugs = refractory_to.get(rel.relapse_id)
        refractory = f"; refractory to {', '.join(drugs)}" if drugs else ""
        twice = f", recorded {rel.event_records} times" if (rel.event_records or 0) > 1 else ""
        later = ", after the salvage it caused began" if rel.recorded_after_line_start else ""
        text = f"relapse #{rel.sequence} (from {rel.sources or rel.source}{twice}{later}){refractory}{flag}"
        out.append(TimelineEntry(rel.relapse_date, "relapse", text))
    return out
