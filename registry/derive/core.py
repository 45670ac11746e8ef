"""The derivation rules of lines-of-therapy.md as a pure function of one patient's rows.

No database here: ``derive_patient(inputs, params)`` returns plain dataclasses, so every rule
can be tested on hand-built timelines. Dates are ``datetime.date``; an exposure's ``end`` of
``None`` means ongoing at the data cutoff.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from registry.derive.params import DEFAULT_PARAMETERS, DerivationParameters

LENALIDOMIDE = "lenalidomide"
MELPHALAN = "melphalan"


# --------------------------------------------------------------------------- inputs
@dataclass(slots=True)  # built once per source row: slots, not frozen, for speed
class TreatmentRow:
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
    key: str
    date: dt.date
    type: str = "autologous"


@dataclass(slots=True)  # built once per source row: slots, not frozen, for speed
class EventRow:
    key: str
    date: dt.date
    type: str  # response_assessment | progression | relapse


@dataclass(frozen=True)
class PatientInputs:
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
    index: int
    drug: str
    drug_class: str | None
    drug_id: int | None
    start: dt.date
    end: dt.date | None
    stop_reason: str | None
    last_dose: float | None
    role: str  # regimen | conditioning
    source_keys: list[str]
    rows: list[TreatmentRow] = field(repr=False, default_factory=list)

    def running_on(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or self.end >= day)


@dataclass
class Regimen:
    number: int
    line: int
    phase: str
    start: dt.date
    end: dt.date | None
    stop_reason: str | None
    exposures: list[tuple[int, bool]]  # (exposure index, continued from an earlier regimen)
    drugs: list[str]

    @property
    def name(self) -> str:
        return " + ".join(self.drugs)

    @property
    def contains_lenalidomide(self) -> bool:
        return LENALIDOMIDE in self.drugs


@dataclass
class Line:
    number: int
    start: dt.date
    end: dt.date | None
    end_reason: str | None
    start_rule: str  # first | progression | gap | new_drug
    includes_index_transplant: bool = False


@dataclass
class Progression:
    date: dt.date
    source: str  # event | stop_reason
    key: str


@dataclass
class Relapse:
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
    patient_key: str
    exposures: list[Exposure]
    regimens: list[Regimen]
    lines: list[Line]
    transplant_roles: dict[str, tuple[str, int | None]]  # key -> (role, line number)
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


# --------------------------------------------------------------------------- the rules
def latest_end(ends: Iterable[dt.date | None]) -> dt.date | None:
    """The end of a group of periods: None (ongoing) if any is ongoing, else the latest end."""
    ends = list(ends)
    if not ends or any(e is None for e in ends):
        return None
    return max(e for e in ends if e is not None)


def documented_progressions(inp: PatientInputs) -> list[Progression]:
    """Progression/relapse events (event date) and treatment rows stopped for progression
    (end date), sorted by date (events first on the same day)."""
    found = [Progression(e.date, "event", e.key) for e in inp.events if e.type in ("progression", "relapse")]
    found += [
        Progression(t.end, "stop_reason", t.key)
        for t in inp.treatments
        if t.stop_reason == "progression" and t.end is not None
    ]
    return sorted(found, key=lambda p: (p.date, p.source != "event", p.key))


def _is_conditioning(t: TreatmentRow, transplant_dates: list[dt.date], p: DerivationParameters) -> bool:
    if t.intent == "conditioning":
        return True
    if t.drug == MELPHALAN:
        window = dt.timedelta(days=p.conditioning_window_days)
        return any(d - window <= t.start <= d for d in transplant_dates)
    return False


def build_exposures(
    inp: PatientInputs, progressions: list[Progression], p: DerivationParameters
) -> list[Exposure]:
    tx_dates = sorted(t.date for t in inp.transplants)
    prog_dates = [pr.date for pr in progressions]
    rows = [t for t in inp.treatments if t.drug is not None]
    by_role_drug: dict[tuple[str, str], list[TreatmentRow]] = {}
    for t in rows:
        role = "conditioning" if _is_conditioning(t, tx_dates, p) else "regimen"
        assert t.drug is not None
        by_role_drug.setdefault((role, t.drug), []).append(t)

    exposures: list[Exposure] = []
    for (role, _drug), group in sorted(by_role_drug.items()):
        group.sort(key=lambda t: (t.start, t.end or dt.date.max, t.key))
        current: list[TreatmentRow] = []
        cur_end: dt.date | None = None  # None while ongoing
        stopped_for_progression = False  # a row of the current exposure stopped for progression
        for t in group:
            if current and _merges(stopped_for_progression, cur_end, t, tx_dates, prog_dates, p):
                current.append(t)
                cur_end = None if (cur_end is None or t.end is None) else max(cur_end, t.end)
                stopped_for_progression |= t.stop_reason == "progression"
                continue
            if current:
                exposures.append(_exposure(len(exposures), role, current))
            current, cur_end = [t], t.end
            stopped_for_progression = t.stop_reason == "progression"
        if current:
            exposures.append(_exposure(len(exposures), role, current))
    exposures.sort(key=lambda e: (e.start, e.drug, e.role))
    for i, e in enumerate(exposures):
        e.index = i
    return exposures


def _merges(
    stopped_for_progression: bool,
    cur_end: dt.date | None,
    nxt: TreatmentRow,
    tx_dates: list[dt.date],
    prog_dates: list[dt.date],
    p: DerivationParameters,
) -> bool:
    if cur_end is None:  # still running: a row starting during it continues it
        return True
    if (nxt.start - cur_end).days > p.drug_gap_days:
        return False
    if stopped_for_progression:
        return False
    lo, hi = cur_end, nxt.start
    if any(lo <= d <= hi for d in tx_dates):
        return False
    return not any(lo <= d <= hi for d in prog_dates)


def _exposure(index: int, role: str, rows: list[TreatmentRow]) -> Exposure:
    end = latest_end(r.end for r in rows)
    last_ending = max(rows, key=lambda r: (r.end or dt.date.max, r.start))
    last_started = max(rows, key=lambda r: (r.start, r.end or dt.date.max))
    first = rows[0]
    return Exposure(
        index=index,
        drug=first.drug or "",
        drug_class=first.drug_class,
        drug_id=first.drug_id,
        start=min(r.start for r in rows),
        end=end,
        stop_reason=last_ending.stop_reason,
        last_dose=last_started.dose,
        role=role,
        source_keys=[r.key for r in rows],
        rows=rows,
    )


def transplant_roles(
    inp: PatientInputs, progressions: list[Progression], p: DerivationParameters
) -> tuple[dict[str, str], TransplantRow | None, TransplantRow | None]:
    roles: dict[str, str] = {}
    index: TransplantRow | None = None
    tandem: TransplantRow | None = None
    first_prog = progressions[0].date if progressions else None
    for t in sorted(inp.transplants, key=lambda t: (t.date, t.key)):
        if t.type != "autologous":
            roles[t.key] = "allogeneic"
            continue
        preceded = any(pr.date < t.date for pr in progressions)
        if index is None:
            if preceded:
                roles[t.key] = "salvage"
            else:
                index, roles[t.key] = t, "index"
            continue
        if (
            tandem is None
            and (t.date - index.date).days <= p.tandem_window_days
            and (first_prog is None or first_prog > t.date)
        ):
            tandem, roles[t.key] = t, "tandem"
        else:
            roles[t.key] = "salvage" if preceded else "additional"
    return roles, index, tandem


def derive_patient(inp: PatientInputs, p: DerivationParameters = DEFAULT_PARAMETERS) -> Derivation:
    progressions = documented_progressions(inp)
    prog_dates = [pr.date for pr in progressions]
    exposures = build_exposures(inp, progressions, p)
    roles, index_tx, tandem_tx = transplant_roles(inp, progressions, p)
    line1_last_tx = tandem_tx or index_tx
    first_prog_after_index = next((d for d in prog_dates if d > index_tx.date), None) if index_tx else None
    window = dt.timedelta(days=p.regimen_window_days)
    end_fu = inp.end_of_follow_up
    liners = [e for e in exposures if e.role == "regimen" and e.drug_class not in p.non_line_classes]
    steroids = [e for e in exposures if e.role == "regimen" and e.drug_class in p.non_line_classes]
    tx_dates = sorted(t.date for t in inp.transplants if roles.get(t.key) in ("index", "tandem"))

    # ---- regimens: anchor at the earliest unassigned exposure; join within the window
    regimens_raw: list[tuple[dt.date, list[tuple[Exposure, bool]]]] = []
    assigned: set[int] = set()
    for anchor in liners:
        if anchor.index in assigned:
            continue
        start = anchor.start
        close = start + window
        for d in [*prog_dates, *tx_dates]:
            if start < d < close:
                close = d  # a progression (or the index transplant) closes the window early
        members: list[tuple[Exposure, bool]] = []
        for e in liners:
            if e.index in assigned:
                if e.start < start and _continued(e, start, window, end_fu):
                    members.append((e, True))
                continue
            if start <= e.start < close:
                members.append((e, False))
                assigned.add(e.index)
        for s in steroids:
            if start <= s.start < close:
                members.append((s, False))
        regimens_raw.append((start, members))

    # ---- lines and phases
    lines: list[Line] = []
    regimens: list[Regimen] = []
    line_exposures: dict[int, dict[int, Exposure]] = {}
    if index_tx is not None and (not regimens_raw or regimens_raw[0][0] > index_tx.date):
        # a transplant without recorded induction: line 1 starts with the transplant
        lines.append(Line(1, index_tx.date, line1_last_tx.date if line1_last_tx else None, None, "first"))
        line_exposures[1] = {}
    for number, (start, members) in enumerate(regimens_raw, start=1):
        drugs = {e.drug for e, _ in members if e.drug_class not in p.non_line_classes}
        rule: str | None
        if not lines:
            rule = "first"
        else:
            cur = lines[-1]
            cur_exp = line_exposures[cur.number]
            in_planned = (
                cur.number == 1
                and line1_last_tx is not None
                and start > index_tx.date  # type: ignore[union-attr]
                and (first_prog_after_index is None or start < first_prog_after_index)
                and (start - line1_last_tx.date).days <= p.maintenance_start_max_days
            )
            rule = None
            if any(cur.start < d <= start for d in prog_dates):
                rule = "progression"
            elif not in_planned:
                ends = [e.end for e in cur_exp.values()]
                if ends and all(x is not None and (start - x).days > p.drug_gap_days for x in ends):
                    rule = "gap"
                elif (drugs - {e.drug for e in cur_exp.values()}) and start > cur.start + window:
                    rule = "new_drug"
        if rule is not None:
            if lines and rule == "progression":
                lines[-1].end_reason = "progression"
            lines.append(Line(len(lines) + 1, start, None, None, rule))
            line_exposures[len(lines)] = {}
        line = lines[-1]
        for e, _ in members:
            if e.drug_class not in p.non_line_classes:
                line_exposures[line.number][e.index] = e
        phase, combo_end = _phase(line.number, start, members, index_tx, inp, roles, p)
        if phase == "consolidation" and combo_end is not None:
            # what continues after the combination ends is maintenance (e.g. VRd consolidation
            # whose lenalidomide simply goes on: the same exposure, a new phase)
            tail = [
                (e, True)
                for e, _ in members
                if e.drug_class not in p.non_line_classes and (e.end is None or e.end > combo_end + window)
            ]
            head = [(e, c) for e, c in members if e.start <= combo_end]
            regimens.append(_regimen(number, line.number, phase, start, head, cap=combo_end))
            if tail:
                # it starts with the first row given after the combination (else the day after)
                later = [r.start for e, _ in tail for r in e.rows if r.start > combo_end]
                tail_start = min(later) if later else combo_end + dt.timedelta(days=1)
                regimens.append(_regimen(number, line.number, "maintenance", tail_start, tail))
            continue
        regimens.append(_regimen(number, line.number, phase, start, members))

    for i, reg in enumerate(regimens, start=1):
        reg.number = i
    for line in lines:
        exps = list(line_exposures[line.number].values())
        if not exps:
            continue
        line.end = latest_end(e.end for e in exps)
        if line.end_reason is None:
            last = max(exps, key=lambda e: (e.end or dt.date.max, e.start))
            line.end_reason = "ongoing" if line.end is None else last.stop_reason
    if index_tx is not None:
        for line in lines:
            nxt = next((ln for ln in lines if ln.number == line.number + 1), None)
            if line.start <= index_tx.date and (nxt is None or nxt.start > index_tx.date):
                line.includes_index_transplant = True

    def line_at(day: dt.date) -> int | None:
        started = [ln.number for ln in lines if ln.start <= day]
        return max(started) if started else None

    out_roles = {t.key: (roles[t.key], line_at(t.date)) for t in inp.transplants}
    relapses = _relapses(progressions, exposures, index_tx, line_at, p)
    return Derivation(
        patient_key=inp.patient_key,
        exposures=exposures,
        regimens=regimens,
        lines=lines,
        transplant_roles=out_roles,
        relapses=relapses,
        index_transplant=index_tx,
        tandem_transplant=tandem_tx,
        progressions=progressions,
    )


def _continued(e: Exposure, start: dt.date, window: dt.timedelta, end_fu: dt.date | None) -> bool:
    """An exposure running at a regimen's start that is still running ``window`` later (or
    until the end of follow-up, when that comes sooner) is continued into the regimen."""
    if not e.running_on(start):
        return False
    horizon = start + window
    if end_fu is not None and end_fu < horizon:
        horizon = end_fu
    return e.end is None or e.end >= horizon


def _phase(
    line: int,
    start: dt.date,
    members: list[tuple[Exposure, bool]],
    index_tx: TransplantRow | None,
    inp: PatientInputs,
    roles: dict[str, str],
    p: DerivationParameters,
) -> tuple[str, dt.date | None]:
    """Phase of a regimen and, for a consolidation, the day its combination ends (the
    earliest end among its new non-steroid exposures)."""
    if line > 1:
        return "salvage", None
    if index_tx is None or start <= index_tx.date:
        return "induction", None
    prior = [t.date for t in inp.transplants if roles.get(t.key) in ("index", "tandem") and t.date < start]
    last_tx = max(prior) if prior else index_tx.date
    new = [e for e, continued in members if not continued and e.drug_class not in p.non_line_classes]
    ends = [e.end for e in new if e.end is not None]
    combo_end = min(ends) if ends else None
    intents = {r.intent for e in new for r in e.rows}
    if "consolidation" in intents:
        return "consolidation", combo_end
    if (
        len({e.drug for e in new}) >= 2
        and (start - last_tx).days <= p.consolidation_start_max_days
        and combo_end is not None
        and (combo_end - start).days <= p.consolidation_max_duration_days
    ):
        return "consolidation", combo_end
    return "maintenance", None


def _regimen(
    number: int,
    line: int,
    phase: str,
    start: dt.date,
    members: list[tuple[Exposure, bool]],
    cap: dt.date | None = None,
) -> Regimen:
    end = latest_end(e.end for e, _ in members)
    if cap is not None:
        end = cap if end is None else min(end, cap)
    last = max(members, key=lambda m: (m[0].end or dt.date.max, m[0].start))[0]
    stop = "completed" if cap is not None and (last.end is None or last.end > cap) else last.stop_reason
    return Regimen(
        number=number,
        line=line,
        phase=phase,
        start=start,
        end=end,
        stop_reason=stop,
        exposures=[(e.index, c) for e, c in members],
        drugs=sorted({e.drug for e, _ in members}),
    )


def _relapses(
    progressions: list[Progression],
    exposures: list[Exposure],
    index_tx: TransplantRow | None,
    line_at,
    p: DerivationParameters,
) -> list[Relapse]:
    episodes: list[Progression] = []
    for pr in progressions:
        if episodes and (pr.date - episodes[-1].date).days < p.relapse_episode_days:
            crosses_index = index_tx is not None and episodes[-1].date <= index_tx.date < pr.date
            if not crosses_index:
                continue  # the same relapse documented twice (event and stop reason)
        episodes.append(pr)
    out: list[Relapse] = []
    first_after_done = False
    drug_exps = [e for e in exposures if e.role == "regimen"]
    for seq, pr in enumerate(episodes, start=1):
        after = index_tx is not None and pr.date > index_tx.date
        first_after = after and not first_after_done
        first_after_done = first_after_done or first_after
        refractory: dict[str, bool] = {}
        for e in drug_exps:
            if e.start > pr.date:
                continue
            hit = e.end is None or e.end >= pr.date or (pr.date - e.end).days <= p.refractory_window_days
            refractory[e.drug] = refractory.get(e.drug, False) or hit
        lens = [e for e in drug_exps if e.drug == LENALIDOMIDE and e.start <= pr.date]
        len_days = None
        len_free = None
        last_dose = None
        if lens:
            len_days = sum(((min(e.end or pr.date, pr.date)) - e.start).days + 1 for e in lens)
            running = any(e.end is None or e.end >= pr.date for e in lens)
            last_end = max((e.end for e in lens if e.end is not None), default=None)
            len_free = 0 if running or last_end is None else (pr.date - last_end).days
            rows = [r for e in lens for r in e.rows if r.start <= pr.date]
            last_dose = max(rows, key=lambda r: (r.start, r.key)).dose if rows else None
        out.append(
            Relapse(
                sequence=seq,
                date=pr.date,
                source=pr.source,
                source_key=pr.key,
                after_index_transplant=after,
                is_first_after_index=first_after,
                line=line_at(pr.date),
                refractory=refractory,
                len_refractory=refractory.get(LENALIDOMIDE, False),
                len_last_dose=last_dose,
                len_exposure_days=len_days,
                len_free_interval_days=len_free,
            )
        )
    return out
