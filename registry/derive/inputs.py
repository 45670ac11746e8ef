"""The derivation's inputs read from the registry: every current row of a batch of patients
(treatments, transplants, disease events, the laboratory samples the response rules judge,
follow-up and the site's cutoff) as ``PatientInputs``, through the DB-API cursor."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection

from registry.core.dates import as_date_or_none
from registry.db.vocabulary import normalise_drug_name
from registry.derive.core import EventRow, PatientInputs, TransplantRow, TreatmentRow
from registry.derive.model import LINE_INTENTS, UNMAPPED_CLASS
from registry.derive.response import MEASURED, Sample


class _Dates(dict[Any, "dt.date | None"]):
    """Stored dates as ``date`` objects, each text parsed once per batch (SQLite returns ISO
    text; a batch's half a million dates hold a few thousand distinct days)."""

    def __missing__(self, v: Any) -> dt.date | None:
        day = self[v] = as_date_or_none(v)
        return day


def fetch(conn: Connection, sql: str, keys: list[str]) -> list[tuple[Any, ...]]:
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


def read_inputs(conn: Connection, keys: list[str], vocab: Any) -> dict[str, PatientInputs]:
    rx: dict[str, list[TreatmentRow]] = {k: [] for k in keys}
    names, classes = vocab.names, vocab.classes
    day = _Dates()
    day[None] = None
    blinded = _UnmappedNames()
    for pkey, tkey, did, start, end, stop, intent, dose, raw in fetch(
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
    for pkey, tkey, when, kind, tandem in fetch(
        conn,
        "SELECT patient_key, transplant_key, transplant_date, transplant_type, planned_tandem "
        "FROM transplants WHERE is_current = TRUE AND patient_key {keys}",
        keys,
    ):
        tx[pkey].append(
            TransplantRow(tkey, day[when], kind, None if tandem is None else bool(tandem))  # type: ignore[arg-type]
        )
    ev: dict[str, list[EventRow]] = {k: [] for k in keys}
    for pkey, ekey, when, kind, response in fetch(
        conn,
        "SELECT patient_key, event_key, event_date, event_type, response "
        "FROM disease_events WHERE is_current = TRUE AND patient_key {keys}",
        keys,
    ):
        ev[pkey].append(EventRow(ekey, day[when], kind, response))  # type: ignore[arg-type]
    labs: dict[str, list[Sample]] = {}
    for pkey, lkey, when, test, value, result in fetch(
        conn,
        "SELECT patient_key, lab_key, sample_date, test, value, result FROM labs "
        f"WHERE is_current = TRUE AND test IN {_JUDGED_TESTS_SQL} AND patient_key {{keys}}",
        keys,
    ):
        labs.setdefault(pkey, []).append(Sample(day[when], test, value, result, lkey))  # type: ignore[arg-type]
    fu: dict[str, tuple[dt.date | None, dt.date | None]] = {}
    for pkey, contact, death in fetch(
        conn,
        "SELECT patient_key, last_contact_date, death_date FROM follow_up "
        "WHERE is_current = TRUE AND patient_key {keys}",
        keys,
    ):
        fu[pkey] = (day[contact], day[death])
    cut: dict[str, dt.date | None] = {}
    for pkey, cutoff in fetch(
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
