"""The inputs and outputs of the derivation rules: plain dataclasses, no database.

Dates are ``datetime.date``; an ``end`` of ``None`` means ongoing at the data cutoff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from registry.core.enums import ExposureRole, Phase, ProgressionSource, StartRule, TransplantRole
from registry.derive import regimen_names

LENALIDOMIDE = "lenalidomide"
MELPHALAN = "melphalan"


# --------------------------------------------------------------------------- inputs
@dataclass(slots=True)  # built once per source row: slots, not frozen, for speed
class TreatmentRow:
    """One treatment row as the rules read it (drug already mapped; None when unmapped)."""

    key: str
    drug: str | None  # generic name; None = not in the vocabulary (ignored)
    drug_class: str | None
    start: dt.date
    end: dt.date | None = None
    stop_reason: str | None = None
    intent: str | None = None
    dose: float | None = None
    drug_id: int | None = None


@dataclass(slots=True)  # built once per source row: slots, not frozen, for speed
class TransplantRow:
    """One transplant as the rules read it."""

    key: str
    date: dt.date
    type: str = "autologous"
    planned_tandem: bool | None = None


@dataclass(slots=True)  # built once per source row: slots, not frozen, for speed
class EventRow:
    """One disease event as the rules read it."""

    key: str
    date: dt.date
    type: str  # response_assessment | progression | relapse


@dataclass(frozen=True)
class PatientInputs:
    """Everything the rules read for one patient."""

    patient_key: str
    treatments: tuple[TreatmentRow, ...] = ()
    transplants: tuple[TransplantRow, ...] = ()
    events: tuple[EventRow, ...] = ()
    last_contact: dt.date | None = None
    death: dt.date | None = None
    cutoff: dt.date | None = None

    @property
    def end_of_follow_up(self) -> dt.date | None:
        return self.death or self.last_contact or self.cutoff


# --------------------------------------------------------------------------- outputs
@dataclass
class Exposure:
    """Same-drug rows merged into one period of exposure."""

    index: int
    drug: str
    drug_class: str | None
    drug_id: int | None
    start: dt.date
    end: dt.date | None
    stop_reason: str | None
    last_dose: float | None
    role: ExposureRole
    source_keys: list[str]
    rows: list[TreatmentRow] = field(repr=False, default_factory=list)
    mobilisation: bool = False  # every row says intent = mobilisation

    def running_on(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or self.end >= day)


@dataclass
class Regimen:
    """Exposures started together (and those continued into them), with a phase."""

    number: int
    line: int
    phase: Phase
    start: dt.date
    end: dt.date | None
    stop_reason: str | None
    exposures: list[tuple[int, bool]]  # (exposure index, continued from an earlier regimen)
    drugs: list[str]
    classes: list[str] = field(default_factory=list)  # the drugs' classes

    @property
    def name(self) -> str:
        return " + ".join(self.drugs)

    @property
    def acronym(self) -> str | None:
        return regimen_names.acronym(self.drugs)

    @property
    def backbone(self) -> str:
        return regimen_names.backbone(self.classes)

    @property
    def contains_lenalidomide(self) -> bool:
        return LENALIDOMIDE in self.drugs


@dataclass
class Line:
    """A line of therapy: its start, end, start rule and end reason."""

    number: int
    start: dt.date
    end: dt.date | None
    end_reason: str | None
    start_rule: StartRule
    includes_index_transplant: bool = False


@dataclass
class Progression:
    """One record documenting a progression (an event or a stop reason)."""

    date: dt.date
    source: ProgressionSource
    key: str


@dataclass
class Relapse:
    """A relapse episode with refractoriness and the lenalidomide facts at it."""

    sequence: int
    date: dt.date
    source: str
    source_key: str
    after_index_transplant: bool
    is_first_after_index: bool
    line: int | None
    refractory: dict[str, bool]  # generic drug name -> refractory at this progression
    len_refractory: bool
    len_last_dose: float | None
    len_exposure_days: int | None
    len_free_interval_days: int | None


@dataclass
class Derivation:
    """Everything derived for one patient, and the facts cohorts start from."""

    patient_key: str
    exposures: list[Exposure]
    regimens: list[Regimen]
    lines: list[Line]
    transplant_roles: dict[str, tuple[TransplantRole, int | None]]  # key -> (role, line number)
    relapses: list[Relapse]
    index_transplant: TransplantRow | None
    tandem_transplant: TransplantRow | None
    progressions: list[Progression]

    # ---- summary facts used by cohorts
    @property
    def maintenance_regimens(self) -> list[Regimen]:
        return [r for r in self.regimens if r.line == 1 and r.phase == "maintenance"]

    @property
    def lenalidomide_maintenance(self) -> bool:
        return any(r.contains_lenalidomide for r in self.maintenance_regimens)

    @property
    def relapse_after_index(self) -> Relapse | None:
        return next((r for r in self.relapses if r.is_first_after_index), None)

    def line(self, number: int) -> Line | None:
        return next((ln for ln in self.lines if ln.number == number), None)

    def first_regimen(self, line: int) -> Regimen | None:
        return next((r for r in self.regimens if r.line == line), None)


def latest_end(ends: Iterable[dt.date | None]) -> dt.date | None:
    """The end of a group of periods: None (ongoing) if any is ongoing, else the latest end."""
    latest = None
    for e in ends:
        if e is None:
            return None
        if latest is None or e > latest:
            latest = e
    return latest
