"""Compact builders for hand-made patient timelines."""

from __future__ import annotations

import datetime as dt
import itertools

from registry.db.vocabulary import read_vocabulary
from registry.derive.core import (
    Derivation,
    EventRow,
    PatientInputs,
    TransplantRow,
    TreatmentRow,
    derive_patient,
)

CLASSES = {e.generic_name: e.drug_class for e in read_vocabulary()}
_keys = itertools.count(1)
# every PatientInputs built by derive(), so the same timelines can also go through a database
CAPTURED: list[PatientInputs] = []


def d(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def rx(
    drug: str | None,
    start: str,
    end: str | None = None,
    stop: str | None = None,
    intent: str | None = None,
    dose: float | None = None,
) -> TreatmentRow:
    return TreatmentRow(
        key=f"rx{next(_keys)}",
        drug=drug,
        drug_class=CLASSES.get(drug) if drug else None,
        start=d(start),
        end=d(end) if end else None,
        stop_reason=stop,
        intent=intent,
        dose=dose,
    )


def unmapped(name: str, start: str, end: str | None = None, intent: str | None = None) -> TreatmentRow:
    """A row whose drug the vocabulary does not map, as the derivation reads it: ignored, or,
    when the row records an intent of a line (r3: a blinded trial drug), a non-steroid drug of
    class ``unmapped`` named by its normalised name."""
    from registry.derive.model import LINE_INTENTS, UNMAPPED_CLASS

    row = rx(None, start, end, intent=intent)
    if intent in LINE_INTENTS:
        row.drug, row.drug_class = name, UNMAPPED_CLASS
    return row


def weekly_dex(start: str, weeks: int, every: int = 7) -> list[TreatmentRow]:
    s = d(start)
    return [
        rx(
            "dexamethasone",
            (s + dt.timedelta(days=every * i)).isoformat(),
            (s + dt.timedelta(days=every * i)).isoformat(),
            "completed",
        )
        for i in range(weeks)
    ]


def auto(date: str, planned_tandem: bool | None = None) -> TransplantRow:
    return TransplantRow(f"tx{next(_keys)}", d(date), "autologous", planned_tandem)


def allo(date: str) -> TransplantRow:
    return TransplantRow(f"tx{next(_keys)}", d(date), "allogeneic")


def days_after(date: str, n: int) -> str:
    return (d(date) + dt.timedelta(days=n)).isoformat()


def lines_of(dv: Derivation) -> list[tuple[int, str, str]]:
    """(number, start rule, start) for every line."""
    return [(ln.number, ln.start_rule, ln.start.isoformat()) for ln in dv.lines]


def prog(date: str, kind: str = "progression") -> EventRow:
    return EventRow(f"ev{next(_keys)}", d(date), kind)


def derive(
    treatments=(),
    transplants=(),
    events=(),
    last_contact="2024-01-01",
    death=None,  # type: ignore[no-untyped-def]
    cutoff="2024-06-30",
) -> Derivation:
    rows = []
    for t in treatments:
        rows.extend(t if isinstance(t, list) else [t])
    inp = PatientInputs(
        "P",
        tuple(rows),
        tuple(transplants),
        tuple(events),
        d(last_contact) if last_contact else None,
        d(death) if death else None,
        d(cutoff),
    )
    CAPTURED.append(inp)
    return derive_patient(inp)


def summary(dv: Derivation) -> list[tuple[int, str, str, str]]:
    """(line, phase, regimen name, start) for every regimen."""
    return [(r.line, r.phase, r.name, r.start.isoformat()) for r in dv.regimens]


def vrd(start: str, end: str) -> list[TreatmentRow]:
    return [
        rx("bortezomib", start, end, "completed"),
        rx("lenalidomide", start, end, "completed"),
        *weekly_dex(start, 12),
    ]
