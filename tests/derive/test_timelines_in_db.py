"""The hand-built timelines of test_timelines.py, loaded as an export bundle into SQLite and
PostgreSQL and derived there: what the database stores must equal the rules' answer."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from sqlalchemy import Engine, select

from etl.pipeline import run_bundle
from registry.db.models import (
    Drug,
    LineOfTherapy,
    PatientSummary,
    Regimen,
    Relapse,
    RelapseRefractoriness,
    TransplantRole,
)
from registry.derive.core import Derivation, PatientInputs, derive_patient
from tests.conftest import TEST_KEY
from tests.derive import helpers, test_revision2, test_revision3, test_timelines
from tests.etl.bundles import write_bundle

KEY = TEST_KEY.encode()


def _timelines() -> list[PatientInputs]:
    helpers.CAPTURED.clear()
    for module in (test_timelines, test_revision2, test_revision3):
        for name in dir(module):
            if name.startswith("test_"):
                getattr(module, name)()
    return list(helpers.CAPTURED)


def _bundle_rows(timelines: list[PatientInputs]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {
        "patients": [],
        "transplants": [],
        "treatments": [],
        "disease_events": [],
        "follow_up": [],
    }
    iso = dt.date.isoformat
    for i, inp in enumerate(timelines):
        pid = f"TL{i:03d}"
        dates = [t.start for t in inp.treatments] + [t.date for t in inp.transplants]
        first = min(dates + [e.date for e in inp.events])
        rows["patients"].append(
            {
                "patient_id": pid,
                "sex": "F",
                "birth_date": "1955-01-01",
                "diagnosis_date": iso(first - dt.timedelta(days=10)),
            }
        )
        for t in inp.treatments:
            rows["treatments"].append(
                {
                    "treatment_id": f"{pid}-{t.key}",
                    "patient_id": pid,
                    "drug": t.drug or "mystery drug",  # unmapped (r3: "study drug" with an intent)
                    "start_date": iso(t.start),
                    "end_date": iso(t.end) if t.end else "",
                    "stop_reason": t.stop_reason or "",
                    "intent": t.intent or "",
                    "dose_mg": t.dose or "",
                }
            )
        for x in inp.transplants:
            rows["transplants"].append(
                {
                    "transplant_id": f"{pid}-{x.key}",
                    "patient_id": pid,
                    "transplant_date": iso(x.date),
                    "transplant_type": x.type,
                    "planned_tandem": {True: "yes", False: "no", None: ""}[x.planned_tandem],
                }
            )
        for e in inp.events:
            rows["disease_events"].append(
                {
                    "event_id": f"{pid}-{e.key}",
                    "patient_id": pid,
                    "event_date": iso(e.date),
                    "event_type": e.type,
                }
            )
        last = inp.death or inp.last_contact
        assert last is not None
        rows["follow_up"].append(
            {
                "patient_id": pid,
                "last_contact_date": iso(last),
                "vital_status": "dead" if inp.death else "alive",
                "death_date": iso(inp.death) if inp.death else "",
            }
        )
    return rows


def _expected(d: Derivation) -> tuple[Any, ...]:
    lines = sorted((ln.number, ln.start, ln.end, ln.start_rule, ln.end_reason) for ln in d.lines)
    regs = sorted((r.line, r.phase, r.name, r.start, r.end) for r in d.regimens)
    rels = sorted(
        (
            r.sequence,
            r.date,
            r.source,
            r.events,
            r.recorded_later,
        )
        for r in d.relapses
    )
    roles = sorted(d.transplant_roles.values(), key=lambda r: (r[0], r[1] or 0))
    l2 = d.line(2)
    second = (l2.start_rule if l2 else None, d.progression_after_line_start(2))
    drugs = sorted(
        (r.sequence, name, at.refractory, at.exposure_days, at.free_interval_days, at.last_dose)
        for r in d.relapses
        for name, at in r.drugs.items()
    )
    return lines, regs, rels, roles, second, drugs


def _stored(engine: Engine, key: str) -> tuple[Any, ...]:
    with engine.connect() as conn:
        lines = conn.execute(
            select(
                LineOfTherapy.line_number,
                LineOfTherapy.start_date,
                LineOfTherapy.end_date,
                LineOfTherapy.start_rule,
                LineOfTherapy.end_reason,
            ).where(LineOfTherapy.patient_key == key)
        ).all()
        regs = conn.execute(
            select(
                LineOfTherapy.line_number, Regimen.phase, Regimen.name, Regimen.start_date, Regimen.end_date
            )
            .join(LineOfTherapy, LineOfTherapy.line_id == Regimen.line_id)
            .where(Regimen.patient_key == key)
        ).all()
        rels = conn.execute(
            select(
                Relapse.sequence,
                Relapse.relapse_date,
                Relapse.source,
                Relapse.event_records,
                Relapse.recorded_after_line_start,
            ).where(Relapse.patient_key == key)
        ).all()
        second = conn.execute(
            select(PatientSummary.l2_start_rule, PatientSummary.l2_progression_date).where(
                PatientSummary.patient_key == key
            )
        ).one()
        roles = conn.execute(
            select(TransplantRole.role, LineOfTherapy.line_number)
            .outerjoin(LineOfTherapy, LineOfTherapy.line_id == TransplantRole.line_id)
            .where(TransplantRole.patient_key == key)
        ).all()
        drugs = conn.execute(
            select(
                Relapse.sequence,
                Drug.generic_name,
                RelapseRefractoriness.refractory,
                RelapseRefractoriness.exposure_days,
                RelapseRefractoriness.free_interval_days,
                RelapseRefractoriness.last_dose_mg,
            )
            .join(Relapse, Relapse.relapse_id == RelapseRefractoriness.relapse_id)
            .join(Drug, Drug.drug_id == RelapseRefractoriness.drug_id)
            .where(Relapse.patient_key == key)
        ).all()
    return (
        sorted(map(tuple, lines)),
        sorted(map(tuple, regs)),
        sorted(map(tuple, rels)),
        sorted(map(tuple, roles), key=lambda r: (r[0], r[1] or 0)),
        tuple(second),
        sorted(map(tuple, drugs)),
    )


def test_every_timeline_derives_the_same_in_the_database(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    timelines = _timelines()
    assert len(timelines) >= 65
    s = run_bundle(
        engine,
        write_bundle(
            tmp_path / "b",
            _bundle_rows(timelines),
            {"data_cutoff": "2024-06-30", "exported_at": "2024-07-01T00:00:00+00:00"},
        ),
        KEY,
    )
    assert s.quarantined == 0, s.warnings
    with_lines = 0
    for i, inp in enumerate(timelines):
        key = hmac.new(KEY, f"TEST-SITE:patient:TL{i:03d}".encode(), hashlib.sha256).hexdigest()[:32]
        stored = _stored(engine, key)
        assert stored == _expected(derive_patient(inp)), f"timeline {i}"
        with_lines += bool(stored[0])
    assert with_lines == len(timelines)  # every timeline really produced lines in the database
