"""Documented progressions, exposures (same-drug rows merged) and transplant roles."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from registry.core.enums import ExposureRole, ProgressionSource, StartRule, TransplantRole
from registry.derive.model import (
    MELPHALAN,
    SOURCE_ORDER,
    Exposure,
    PatientInputs,
    Progression,
    TransplantRow,
    TreatmentRow,
    latest_end,
)
from registry.derive.params import DerivationParameters


def index_transplant(inp: PatientInputs, progressions: list[Progression]) -> TransplantRow | None:
    """The first autologous transplant that no documented progression precedes."""
    first = progressions[0].date if progressions else None
    for t in sorted(inp.transplants, key=lambda t: (t.date, t.key)):
        if first is not None and first < t.date:
            return None
        if t.type == "autologous":
            return t
    return None


def documented_progressions(
    inp: PatientInputs, p: DerivationParameters, labs: list[Progression] | None = None
) -> list[Progression]:
    """Progression/relapse events (event date), treatment rows stopped for progression (end
    date, whatever the drug: mapped, unmapped or supportive) and the laboratory progressions
    found so far (``labs``), of the sources ``p.progression_sources`` names, sorted by date
    (events first on the same day, then stop reasons, then laboratory progressions)."""
    wanted = set(p.progression_sources)
    found: list[Progression] = []
    if ProgressionSource.EVENT in wanted:
        found += [
            Progression(e.date, ProgressionSource.EVENT, e.key)
            for e in inp.events
            if e.type in ("progression", "relapse")
        ]
    if ProgressionSource.STOP_REASON in wanted:
        found += [
            Progression(t.end, ProgressionSource.STOP_REASON, t.key)
            for t in inp.treatments
            if t.stop_reason == "progression" and t.end is not None
        ]
    if ProgressionSource.LABS in wanted and labs:
        found += labs
    order = {s: i for i, s in enumerate(SOURCE_ORDER)}
    return sorted(found, key=lambda pr: (pr.date, order[pr.source], pr.key))


def _is_conditioning(t: TreatmentRow, transplant_dates: list[dt.date], p: DerivationParameters) -> bool:
    if t.intent == "conditioning":
        return True
    if t.drug == MELPHALAN:
        window = dt.timedelta(days=p.conditioning_window_days)
        return any(d - window <= t.start <= d for d in transplant_dates)
    return False


def build_exposures(inp: PatientInputs, splits: list[dt.date], p: DerivationParameters) -> list[Exposure]:
    """Rows of the same drug (and the same role: regimen, conditioning; mobilisation rows
    apart) merge while the gap is at most ``drug_gap_days``, never across a transplant or a
    progression episode (``splits``: where each episode divides, r3). Unmapped drugs (but
    those whose row records an intent, r3) and supportive drugs make no exposure."""
    tx_dates = sorted(t.date for t in inp.transplants)
    prog_dates = splits
    groups: dict[tuple[ExposureRole, bool, str], list[TreatmentRow]] = {}
    for t in inp.treatments:
        if t.drug is None or t.drug_class in p.non_regimen_classes:
            continue
        role = ExposureRole.CONDITIONING if _is_conditioning(t, tx_dates, p) else ExposureRole.REGIMEN
        mobilisation = role == ExposureRole.REGIMEN and t.intent == "mobilisation"
        groups.setdefault((role, mobilisation, t.drug), []).append(t)

    exposures: list[Exposure] = []
    for (role, mobilisation, _drug), group in sorted(groups.items()):
        group.sort(key=lambda t: (t.start, t.end or dt.date.max, t.key))
        current: list[TreatmentRow] = []
        cur_end: dt.date | None = None  # None while ongoing
        stopped_for_progression = False  # a row of the current exposure stopped for progression
        for t in group:
            if current and _merges(
                stopped_for_progression, current[-1].start, cur_end, t, tx_dates, prog_dates, p
            ):
                current.append(t)
                if cur_end is not None and (t.end is None or t.end > cur_end):
                    cur_end = t.end  # ongoing (None) or later
                stopped_for_progression |= t.stop_reason == "progression"
                continue
            if current:
                exposures.append(_exposure(len(exposures), role, mobilisation, current))
            current, cur_end = [t], t.end
            stopped_for_progression = t.stop_reason == "progression"
        if current:
            exposures.append(_exposure(len(exposures), role, mobilisation, current))
    exposures.sort(key=lambda e: (e.start, e.drug, e.role, e.mobilisation))
    for i, e in enumerate(exposures):
        e.index = i
    return exposures


def _merges(
    stopped_for_progression: bool,
    prev_start: dt.date,
    cur_end: dt.date | None,
    nxt: TreatmentRow,
    tx_dates: list[dt.date],
    prog_dates: list[dt.date],
    p: DerivationParameters,
) -> bool:
    """Whether row ``nxt`` continues the current exposure, whose latest-starting row started
    on ``prev_start`` and which ends on ``cur_end`` (None: ongoing)."""
    if stopped_for_progression:
        return False
    # never across a progression or a transplant dated after the earlier row's start and on
    # or before the later row's start (plain loops: these lists are short, and this runs once
    # per pair of same-drug rows)
    start = nxt.start
    for d in prog_dates:
        if prev_start < d <= start:
            return False
    for d in tx_dates:
        if prev_start < d <= start:
            return False
    if cur_end is None:  # still running: a row starting during it continues it
        return True
    return (start - cur_end).days <= p.drug_gap_days


def _exposure(index: int, role: ExposureRole, mobilisation: bool, rows: list[TreatmentRow]) -> Exposure:
    first = rows[0]
    if len(rows) == 1:  # most exposures: one row is its own first, last and latest
        end, last_ending, last_started, start = first.end, first, first, first.start
    else:
        end = latest_end(r.end for r in rows)
        last_ending = max(rows, key=lambda r: (r.end or dt.date.max, r.start))
        last_started = max(rows, key=lambda r: (r.start, r.end or dt.date.max))
        start = min(r.start for r in rows)
    return Exposure(
        index=index,
        drug=first.drug or "",
        drug_class=first.drug_class,
        drug_id=first.drug_id,
        start=start,
        end=end,
        stop_reason=last_ending.stop_reason,
        last_dose=last_started.dose,
        role=role,
        source_keys=[r.key for r in rows],
        rows=rows,
        mobilisation=mobilisation,
    )


@dataclass
class TransplantPlan:
    """Each transplant's role, and the transplants that start a line of their own."""

    roles: dict[str, TransplantRole]
    index: TransplantRow | None
    tandem: TransplantRow | None
    # (date, start rule) of transplants that start a new line: "transplant" (a later
    # transplant that is not a tandem) or "progression" (a salvage transplant with no
    # regimen between the progression and it)
    line_starts: list[tuple[dt.date, StartRule]]


def plan_transplants(
    inp: PatientInputs,
    splits: list[dt.date],
    exposures: list[Exposure],
    p: DerivationParameters,
) -> TransplantPlan:
    """Each transplant's role (index, tandem, salvage, additional, allogeneic) and the
    transplants that start a line of their own; ``splits`` are the progression episodes'
    dates (r3: episodes, not records)."""
    prog_dates = splits
    liners = [
        e for e in exposures if e.role == ExposureRole.REGIMEN and e.drug_class not in p.non_line_classes
    ]
    roles: dict[str, TransplantRole] = {}
    index: TransplantRow | None = None
    tandem: TransplantRow | None = None
    line_starts: list[tuple[dt.date, StartRule]] = []
    for t in sorted(inp.transplants, key=lambda t: (t.date, t.key)):
        auto = t.type == "autologous"
        preceding = [d for d in prog_dates if d < t.date]
        if index is None and auto and not preceding:
            index, roles[t.key] = t, TransplantRole.INDEX
            continue
        if index is not None and tandem is None and _is_tandem(t, index, prog_dates, liners, p):
            tandem, roles[t.key] = t, TransplantRole.TANDEM
            continue
        if preceding:
            # a salvage transplant belongs to the line in which it falls; it starts the new
            # line itself when no regimen started between the progression and it
            roles[t.key] = TransplantRole.SALVAGE if auto else TransplantRole.ALLOGENEIC
            last = preceding[-1]
            if not any(last <= e.start < t.date for e in liners):
                line_starts.append((t.date, StartRule.PROGRESSION))
            continue
        roles[t.key] = TransplantRole.ADDITIONAL if auto else TransplantRole.ALLOGENEIC
        if index is not None:  # each transplant after line 1's, except a tandem, is a new line
            line_starts.append((t.date, StartRule.TRANSPLANT))
    return TransplantPlan(roles, index, tandem, line_starts)


def _is_tandem(
    t: TransplantRow,
    index: TransplantRow,
    prog_dates: list[dt.date],
    liners: list[Exposure],
    p: DerivationParameters,
) -> bool:
    """Autologous (or allogeneic: auto-allo tandem) within the tandem window of the index
    transplant (the planned-tandem window when the export says so), before any progression,
    with no new non-steroid drug started between the two."""
    days = (t.date - index.date).days
    window = p.planned_tandem_window_days if t.planned_tandem else p.tandem_window_days
    if not 0 < days <= window:
        return False
    if any(d <= t.date for d in prog_dates):
        return False
    return not any(index.date < e.start < t.date for e in liners)
