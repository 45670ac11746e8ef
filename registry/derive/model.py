"""The inputs and outputs of the derivation rules: plain dataclasses, no database.

Dates are ``datetime.date``; an ``end`` of ``None`` means ongoing at the data cutoff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from registry.core.enums import ExposureRole, Phase, ProgressionSource, StartRule, TransplantRole
from registry.derive import regimen_names
from registry.derive.response import LineResponse, Sample

MELPHALAN = "melphalan"
UNMAPPED_CLASS = "unmapped"  # (r3) a drug the vocabulary does not map, whose row records an intent
LINE_INTENTS = frozenset({"induction", "consolidation", "maintenance", "salvage"})
# the start rules of a line that a progression started (the previous line ends for progression)
PROGRESSION_RULES = frozenset({StartRule.PROGRESSION, StartRule.PROGRESSION_RECORDED_LATER})
# the order a relapse lists its sources in
SOURCE_ORDER = (ProgressionSource.EVENT, ProgressionSource.STOP_REASON, ProgressionSource.LABS)


# --------------------------------------------------------------------------- inputs
@dataclass(slots=True)  # built once per source row: slots, not frozen, for speed
class TreatmentRow:
    """One treatment row as the rules read it (drug already mapped; None when unmapped)."""

    key: str
    # generic name; None = not in the vocabulary (ignored). (r3) An unmapped drug whose row
    # records an intent has its normalised name here and class ``unmapped``
    drug: str | None
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
    response: str | None = None  # the recorded IMWG category of a response assessment


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
    labs: tuple[Sample, ...] = ()  # laboratory samples in canonical units (labs.csv, optional)

    @property
    def end_of_follow_up(self) -> dt.date | None:
        return self.death or self.last_contact or self.cutoff

    @property
    def last_record(self) -> dt.date | None:
        """The latest date of any treatment (start or end), transplant or disease event."""
        days = [d for t in self.treatments for d in (t.start, t.end) if d is not None]
        days += [t.date for t in self.transplants if t.date is not None]
        days += [e.date for e in self.events if e.date is not None]
        return max(days, default=None)


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

    def contains(self, drug: str) -> bool:
        """Whether the generic drug ``drug`` is one of the regimen's."""
        return drug in self.drugs


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
class Episode:
    """(r3) A progression episode: records within ``relapse_episode_days`` of its first one.

    ``date`` is its first record's (the relapse's documented date); ``split`` is where it
    divides lines, exposures and regimens: the same day, or, when a salvage regimen began up to
    ``progression_lag_days`` before the progression was recorded, that regimen's start."""

    date: dt.date
    source: ProgressionSource
    key: str
    events: int = 0  # disease-event records of it (2 or more: the relapse recorded again)
    split: dt.date | None = None  # None: ``date``
    sources: set[str] = field(default_factory=set)  # what documents it: event, stop_reason, labs

    @property
    def source_list(self) -> str:
        """Its sources, comma-separated in a fixed order (e.g. ``event,labs``)."""
        return ",".join(s for s in SOURCE_ORDER if s in self.sources)

    @property
    def splits_on(self) -> dt.date:
        return self.date if self.split is None else self.split

    @property
    def recorded_later(self) -> bool:
        return self.split is not None and self.split < self.date


@dataclass(frozen=True)
class DrugAtRelapse:
    """One drug the patient had before a relapse, as it stood at the relapse."""

    refractory: bool  # progressed on it or within the refractory window of its end
    exposure_days: int  # days on it up to the relapse
    free_interval_days: int  # days from its last day to the relapse (0 while it runs)
    last_dose: float | None  # the last recorded dose before the relapse


@dataclass
class Relapse:
    """A relapse episode with every drug given before it (refractoriness, exposure, last dose,
    drug-free interval)."""

    sequence: int
    date: dt.date
    source: str
    source_key: str
    after_index_transplant: bool
    is_first_after_index: bool
    line: int | None
    drugs: dict[str, DrugAtRelapse]  # generic drug name -> how it stood at this progression
    events: int = 0  # (r3) disease-event records of the episode (2 or more: recorded again)
    recorded_later: bool = False  # (r3) recorded after the salvage regimen it caused began
    sources: str = ""  # what documents the episode, comma-separated (e.g. ``event,labs``)

    @property
    def refractory(self) -> dict[str, bool]:
        """Generic drug name -> refractory at this progression."""
        return {name: d.refractory for name, d in self.drugs.items()}

    def refractory_to(self, drug: str) -> bool:
        """Refractory to ``drug`` at this relapse (False when never given before it)."""
        given = self.drugs.get(drug)
        return given is not None and given.refractory


@dataclass
class LineOutcome:
    """The response of one line: judged from the laboratory series (``basis`` labs, with the
    engine's full result), else from recorded response assessments (``recorded``), else
    ``not_evaluable``."""

    line: int
    basis: str  # labs | recorded | not_evaluable
    best: str | None = None
    best_date: dt.date | None = None
    labs: LineResponse | None = None
    response_date: dt.date | None = None  # the first confirmed PR or better (the origin of its duration)


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
    episodes: list[Episode] = field(default_factory=list)
    responses: list[LineOutcome] = field(default_factory=list)  # one per line, in line order
    day100_response: str | None = None  # line 1's derived category nearest day 100 after the index transplant
    last_record_date: dt.date | None = None  # the inputs' latest treatment, transplant or event date

    # ---- summary facts used by cohorts
    @property
    def maintenance_regimens(self) -> list[Regimen]:
        return [r for r in self.regimens if r.line == 1 and r.phase == "maintenance"]

    @property
    def maintenance_agents(self) -> list[str]:
        """The generic drugs of line 1's maintenance, sorted."""
        return sorted({drug for r in self.maintenance_regimens for drug in r.drugs})

    def maintenance_has(self, drug: str) -> bool:
        return drug in self.maintenance_agents

    @property
    def relapse_after_index(self) -> Relapse | None:
        return next((r for r in self.relapses if r.is_first_after_index), None)

    def line(self, number: int) -> Line | None:
        return next((ln for ln in self.lines if ln.number == number), None)

    def first_regimen(self, line: int) -> Regimen | None:
        return next((r for r in self.regimens if r.line == line), None)

    def progression_after_line_start(self, number: int) -> dt.date | None:
        """(r3) The documented date of the first progression episode that began after line
        ``number`` started and is not the one that started it (the event of endpoints whose
        origin is that line's start: the study's ``pfs_2l`` and ``pfs2``)."""
        line = self.line(number)
        if line is None:
            return None
        return next((e.date for e in self.episodes if e.splits_on > line.start), None)


def latest_end(ends: Iterable[dt.date | None]) -> dt.date | None:
    """The end of a group of periods: None (ongoing) if any is ongoing, else the latest end."""
    latest = None
    for e in ends:
        if e is None:
            return None
        if latest is None or e > latest:
            latest = e
    return latest
