"""The derivation rules (docs/derivations.md, revision 3) as a pure function of one patient's
rows.

No database here: ``derive_patient(inputs, params)`` returns plain dataclasses, so every rule
can be tested on hand-built timelines. Exposures, transplant roles and relapses have modules
of their own; this one forms regimens and lines.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from registry.core.enums import ExposureRole, LineEnd, Phase, ProgressionSource, StartRule
from registry.derive.exposures import (
    TransplantPlan,
    build_exposures,
    documented_progressions,
    index_transplant,
    plan_transplants,
)
from registry.derive.lag import recorded_later
from registry.derive.model import (
    MELPHALAN,
    PROGRESSION_RULES,
    Derivation,
    Episode,
    EventRow,
    Exposure,
    Line,
    PatientInputs,
    Progression,
    Regimen,
    Relapse,
    TransplantRow,
    TreatmentRow,
    latest_end,
)
from registry.derive.params import DEFAULT_PARAMETERS, DerivationParameters
from registry.derive.relapses import derive_relapses, relapse_episodes
from registry.derive.responses import day100_response, judge_lines, lab_progressions

__all__ = [
    "MELPHALAN",
    "Derivation",
    "EventRow",
    "Exposure",
    "Line",
    "PatientInputs",
    "Progression",
    "Regimen",
    "Relapse",
    "TransplantRow",
    "TreatmentRow",
    "derive_patient",
    "latest_end",
]

ONE_DAY = dt.timedelta(days=1)
MAX_LAB_PASSES = 20  # each pass adds a laboratory progression: more would mean a fault
Members = list[tuple[Exposure, bool]]  # (exposure, continued from an earlier regimen)


def derive_patient(inp: PatientInputs, p: DerivationParameters = DEFAULT_PARAMETERS) -> Derivation:
    """Derive one patient's treatment history by the rules of docs/derivations.md.

    Parameters
    ----------
    inp
        The patient's current treatment, transplant and disease-event rows and follow-up.
    p
        The rules' parameters (defaults: revision 3).

    Returns
    -------
    Derivation
        Exposures, regimens with their phases, lines with start rules and end reasons,
        transplant roles, relapse episodes with refractoriness, and the facts cohorts use.
    """
    # laboratory progressions join the recorded ones: each pass judges the lines the previous
    # one derived and adds the confirmed PDs it finds (at most one a line); a PD found stays
    # found, so the passes end (most patients: no laboratory series, or no PD, one pass)
    labs: list[Progression] = []
    use_labs = ProgressionSource.LABS in p.progression_sources
    judged: dict[Any, Any] = {}  # lines judged by an earlier pass
    for _ in range(MAX_LAB_PASSES):
        dv = _derive_lagged(inp, documented_progressions(inp, p, labs), p)
        outcomes = judge_lines(inp, dv, p, judged)
        known = {pr.date for pr in labs}
        new = [pr for pr in lab_progressions(outcomes) if pr.date not in known]
        if not use_labs or not new:
            break
        labs += new
        if _fold_into_episodes(dv, inp, new, p):  # the same lines: only relapses' sources change
            dv.progressions = documented_progressions(inp, p, labs)
            break
    dv.responses = outcomes
    dv.day100_response = day100_response(dv, outcomes, p)
    return dv


def _fold_into_episodes(
    dv: Derivation, inp: PatientInputs, new: list[Progression], p: DerivationParameters
) -> bool:
    """Add the laboratory progressions ``new`` to the episodes they belong to, when every one of
    them joins an episode already derived (on or after its first record, within
    ``relapse_episode_days``, not across the index transplant). Such a record changes no
    episode's date, split or record count, so another pass would derive the same exposures,
    lines and regimens: only the episodes' and their relapses' sources gain ``labs`` (most
    laboratory progressions document a relapse also recorded). False, and nothing changed,
    when one of them would start an episode of its own: then the caller derives again."""
    index = index_transplant(inp, dv.progressions)
    joined = []
    for pr in new:
        started = [i for i, ep in enumerate(dv.episodes) if ep.date <= pr.date]
        if not started:
            return False
        ep = dv.episodes[started[-1]]
        crosses = index is not None and ep.date <= index.date < pr.date
        if (pr.date - ep.date).days > p.relapse_episode_days or crosses:
            return False
        joined.append(started[-1])
    for i in joined:
        dv.episodes[i].sources.add(ProgressionSource.LABS)
        dv.relapses[i].sources = dv.episodes[i].source_list
    return True


def _derive_lagged(
    inp: PatientInputs, progressions: list[Progression], p: DerivationParameters
) -> Derivation:
    episodes = relapse_episodes(progressions, index_transplant(inp, progressions), p)
    # (r3) a salvage regimen begun before its progression was recorded moves where that
    # episode divides lines to the regimen's start; each pass finds such regimens in the
    # lines the previous pass derived (most patients: one pass, none found)
    while True:
        dv = _derive_once(inp, progressions, episodes, p)
        found = recorded_later(dv, p)
        if not found:
            return dv
        for ep, start in found:
            ep.split = start


def _derive_once(
    inp: PatientInputs, progressions: list[Progression], episodes: list[Episode], p: DerivationParameters
) -> Derivation:
    splits = [ep.splits_on for ep in episodes]
    exposures = build_exposures(inp, splits, p)
    plan = plan_transplants(inp, splits, exposures, p)
    # progressions, line 1's transplants and transplants starting a line close a regimen's window
    closers = list(splits)
    closers += [t.date for t in (plan.index, plan.tandem) if t is not None]
    closers += [d for d, _ in plan.line_starts]
    raw = _form_regimens(exposures, closers, inp.end_of_follow_up, p)
    builder = _LineBuilder(inp, plan, episodes, p)
    builder.run(raw)
    lines, regimens = builder.lines, builder.regimens

    def line_containing(day: dt.date) -> int | None:
        started = [ln.number for ln in lines if ln.start <= day]
        return max(started) if started else None

    def line_progressed(day: dt.date) -> int | None:
        # the line during which it happened: a line starting that very day is its treatment
        started = [ln.number for ln in lines if ln.start < day]
        return max(started) if started else None

    _close_lines(lines, regimens, builder.line_exposures, inp, line_containing, plan.index)
    out_roles = {t.key: (plan.roles[t.key], line_containing(t.date)) for t in inp.transplants}
    relapses = derive_relapses(episodes, exposures, plan.index, line_progressed, p)
    return Derivation(
        patient_key=inp.patient_key,
        exposures=exposures,
        regimens=regimens,
        lines=lines,
        transplant_roles=out_roles,
        relapses=relapses,
        index_transplant=plan.index,
        tandem_transplant=plan.tandem,
        progressions=progressions,
        episodes=episodes,
        last_record_date=inp.last_record,
    )


# --------------------------------------------------------------------------- regimens
def _form_regimens(
    exposures: list[Exposure], closers: list[dt.date], end_fu: dt.date | None, p: DerivationParameters
) -> list[tuple[dt.date, Members]]:
    """A regimen starts at the earliest unassigned non-steroid exposure; exposures starting
    within ``regimen_window_days`` (inclusive) join it, unless a progression or a transplant
    closes the window first. Mobilisation exposures form regimens of their own. Exposures
    running at the start and still running a window later are continued into it; a steroid
    not yet in a regimen and running at the start joins it too."""
    window = dt.timedelta(days=p.regimen_window_days)
    regimen_role = [e for e in exposures if e.role == ExposureRole.REGIMEN]
    liners = [e for e in regimen_role if e.drug_class not in p.non_line_classes]
    steroids = [e for e in regimen_role if e.drug_class in p.non_line_classes]
    out: list[tuple[dt.date, Members]] = []
    assigned: set[int] = set()
    for anchor in liners:
        if anchor.index in assigned:
            continue
        start = anchor.start
        limit = start + window
        stop = min((d for d in closers if start < d <= limit), default=None)

        def inside(
            day: dt.date, start: dt.date = start, limit: dt.date = limit, stop: dt.date | None = stop
        ) -> bool:
            return start <= day and (day < stop if stop is not None else day <= limit)

        members = _members(anchor, liners, assigned, inside, window, end_fu)
        for s in steroids:  # steroids starting in the window, or started a few days before
            if s.index not in assigned and (
                inside(s.start) or (not anchor.mobilisation and s.running_on(start))
            ):
                members.append((s, False))
                assigned.add(s.index)
        out.append((start, members))
    return out


def _members(
    anchor: Exposure,
    liners: list[Exposure],
    assigned: set[int],
    inside: Callable[[dt.date], bool],
    window: dt.timedelta,
    end_fu: dt.date | None,
) -> Members:
    """The non-steroid exposures of the regimen ``anchor`` starts: those starting inside its
    window (taken), and those of earlier regimens continued into it."""
    start = anchor.start
    members: Members = []
    for e in liners:
        if e.index in assigned:
            if (
                not anchor.mobilisation
                and not e.mobilisation
                and e.start < start
                and _continued(e, start, window, end_fu)
            ):
                members.append((e, True))
            continue
        if e.mobilisation == anchor.mobilisation and inside(e.start):
            members.append((e, False))
            assigned.add(e.index)
    return members


def _continued(e: Exposure, start: dt.date, window: dt.timedelta, end_fu: dt.date | None) -> bool:
    """An exposure running at a regimen's start that is still running ``window`` later (or
    until the end of follow-up, when that comes sooner) is continued into the regimen."""
    if not e.running_on(start):
        return False
    horizon = start + window
    if end_fu is not None and end_fu < horizon:
        horizon = end_fu
    return e.end is None or e.end >= horizon


# --------------------------------------------------------------------------- lines
class _LineBuilder:
    """Walks regimens and line-starting transplants in date order, opening lines by the
    rules (progression, gap, new drug, transplant) and giving each regimen its phase."""

    def __init__(
        self, inp: PatientInputs, plan: TransplantPlan, episodes: list[Episode], p: DerivationParameters
    ) -> None:
        self.inp = inp
        self.plan = plan
        self.episodes = episodes
        prog_dates = [ep.splits_on for ep in episodes]
        self.prog_dates = prog_dates
        self.p = p
        self.window = dt.timedelta(days=p.regimen_window_days)
        index = plan.index
        self.line1_last_tx = plan.tandem or index
        self.first_prog_after_index = (
            next((d for d in prog_dates if d > index.date), None) if index is not None else None
        )
        self.line1_tx_dates = sorted(t.date for t in (index, plan.tandem) if t is not None)
        self.lines: list[Line] = []
        self.regimens: list[Regimen] = []
        self.line_exposures: dict[int, dict[int, Exposure]] = {}

    def open(self, start: dt.date, rule: StartRule) -> None:
        if self.lines and rule in PROGRESSION_RULES:
            self.lines[-1].end_reason = LineEnd.PROGRESSION
        number = len(self.lines) + 1
        self.lines.append(Line(number, start, None, None, rule))
        self.line_exposures[number] = {}

    def run(self, raw: list[tuple[dt.date, Members]]) -> None:
        index = self.plan.index
        if index is not None and (not raw or raw[0][0] > index.date):
            self.open(index.date, StartRule.FIRST)  # a transplant without recorded induction
        items: list[tuple[dt.date, int, StartRule | None, Members]] = [
            (d, 0, rule, []) for d, rule in self.plan.line_starts
        ]
        items += [(start, 1, None, members) for start, members in raw]
        items.sort(key=lambda it: (it[0], it[1]))
        for day, kind, tx_rule, members in items:
            if kind == 0:  # a transplant that starts a line of its own
                assert tx_rule is not None
                self.open(day, tx_rule if self.lines else StartRule.FIRST)
                continue
            rule = self._new_line_rule(day, members)
            if rule is not None:
                self.open(day, rule)
            self._add_regimen(day, members)
        for i, reg in enumerate(self.regimens, start=1):
            reg.number = i

    def _new_line_rule(self, start: dt.date, members: Members) -> StartRule | None:
        if not self.lines:
            return StartRule.FIRST
        cur = self.lines[-1]
        # (r3) episodes, never single records: a record of an episode that began earlier is
        # no progression after the current line's start
        due = [ep for ep in self.episodes if cur.start < ep.splits_on <= start]
        if due:
            later = any(ep.recorded_later and ep.splits_on == start for ep in due)
            return StartRule.PROGRESSION_RECORDED_LATER if later else StartRule.PROGRESSION
        index = self.plan.index
        if index is not None and start <= index.date:
            return None  # before the index transplant only a progression splits line 1
        if self._planned_after_transplant(cur, start):
            return None
        return self._gap_or_new_drug(cur, start, members)

    def _planned_after_transplant(self, cur: Line, start: dt.date) -> bool:
        """Line 1's consolidation or maintenance: after the index transplant, before any
        progression, within ``maintenance_start_max_days`` of line 1's last transplant."""
        index, last_tx = self.plan.index, self.line1_last_tx
        return (
            cur.number == 1
            and index is not None
            and last_tx is not None
            and start > index.date
            and (self.first_prog_after_index is None or start < self.first_prog_after_index)
            and (start - last_tx.date).days <= self.p.maintenance_start_max_days
        )

    def _gap_or_new_drug(self, cur: Line, start: dt.date, members: Members) -> StartRule | None:
        p = self.p
        cur_exp = self.line_exposures[cur.number]
        ends = [e.end for e in cur_exp.values()]
        if ends and all(x is not None and (start - x).days > p.drug_gap_days for x in ends):
            return StartRule.GAP
        drugs = {e.drug for e, _ in members if e.drug_class not in p.non_line_classes}
        if (drugs - {e.drug for e in cur_exp.values()}) and start > cur.start + self.window:
            return StartRule.NEW_DRUG
        return None

    def _add_regimen(self, start: dt.date, members: Members) -> None:
        p = self.p
        line = self.lines[-1]
        for e, _ in members:
            if e.drug_class not in p.non_line_classes:
                self.line_exposures[line.number][e.index] = e
        phase, combo_end = self._phase(line.number, start, members)
        if phase == Phase.CONSOLIDATION and combo_end is not None:
            # what goes on alone after the combination ends is maintenance (e.g. VRd
            # consolidation whose lenalidomide simply goes on: the same exposure, a new phase)
            tail = [
                (e, True)
                for e, _ in members
                if e.drug_class not in p.non_line_classes
                and (e.end is None or e.end > combo_end + self.window)
            ]
            head = [(e, c) for e, c in members if e.start <= combo_end]
            self.regimens.append(_regimen(line.number, phase, start, head, p, cap=combo_end))
            if tail:
                # it starts with the first row given after the combination (else the day after)
                later = [r.start for e, _ in tail for r in e.rows if r.start > combo_end]
                tail_start = min(later) if later else combo_end + ONE_DAY
                self.regimens.append(_regimen(line.number, Phase.MAINTENANCE, tail_start, tail, p))
            return
        self.regimens.append(_regimen(line.number, phase, start, members, p))

    def _phase(self, line: int, start: dt.date, members: Members) -> tuple[Phase, dt.date | None]:
        """Phase of a regimen and, for a consolidation, the day its combination ends (the
        earliest end among its new non-steroid exposures)."""
        p = self.p
        new = [e for e, continued in members if not continued and e.drug_class not in p.non_line_classes]
        if new and all(e.mobilisation for e in new):
            return Phase.MOBILISATION, None
        if line > 1:
            return Phase.SALVAGE, None
        index = self.plan.index
        if index is None or start <= index.date:
            return Phase.INDUCTION, None
        return self._after_index_phase(start, new)

    def _after_index_phase(self, start: dt.date, new: list[Exposure]) -> tuple[Phase, dt.date | None]:
        """Line 1 after the index transplant: the recorded intent, else consolidation (two or
        more drugs soon after the transplant, for a short while) or maintenance."""
        p = self.p
        index = self.plan.index
        assert index is not None
        prior = [d for d in self.line1_tx_dates if d < start]
        last_tx = max(prior) if prior else index.date
        intents = [r.intent for e in new for r in e.rows]
        if intents and all(i == Phase.MAINTENANCE for i in intents):
            return Phase.MAINTENANCE, None  # a recorded intent wins over the heuristics
        ends = [e.end for e in new if e.end is not None]
        combo_end = min(ends) if ends else None
        if Phase.CONSOLIDATION in intents:
            return Phase.CONSOLIDATION, combo_end
        if (
            len({e.drug for e in new}) >= 2
            and (start - last_tx).days <= p.consolidation_start_max_days
            and combo_end is not None
            and (combo_end - start).days <= p.consolidation_max_duration_days
        ):
            return Phase.CONSOLIDATION, combo_end
        return Phase.MAINTENANCE, None


def _regimen(
    line: int,
    phase: Phase,
    start: dt.date,
    members: Members,
    p: DerivationParameters,
    cap: dt.date | None = None,
) -> Regimen:
    # a regimen lasts until its last non-steroid drug stops
    timed = [e for e, _ in members if e.drug_class not in p.non_line_classes] or [e for e, _ in members]
    end = latest_end(e.end for e in timed)
    if cap is not None:
        end = cap if end is None else min(end, cap)
    last = max(timed, key=lambda e: (e.end or dt.date.max, e.start))
    stop = "completed" if cap is not None and (last.end is None or last.end > cap) else last.stop_reason
    return Regimen(
        number=0,
        line=line,
        phase=phase,
        start=start,
        end=end,
        stop_reason=stop,
        exposures=[(e.index, c) for e, c in members],
        drugs=sorted({e.drug for e, _ in members}),
        classes=sorted({e.drug_class for e, _ in members if e.drug_class}),
    )


def _close_lines(
    lines: list[Line],
    regimens: list[Regimen],
    line_exposures: dict[int, dict[int, Exposure]],
    inp: PatientInputs,
    line_containing: Callable[[dt.date], int | None],
    index_tx: TransplantRow | None,
) -> None:
    """A line ends at the latest end of its exposures and transplants (ongoing if any
    exposure is), but never later than the day before the next line starts; its end reason
    is its last-ending exposure's stop reason, ``progression`` when the next line started
    because of one, ``next_line`` when the next line cut it short."""
    tx_by_line: dict[int | None, list[dt.date]] = {}
    for t in inp.transplants:
        tx_by_line.setdefault(line_containing(t.date), []).append(t.date)
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        _close_line(line, nxt, list(line_exposures[line.number].values()), tx_by_line.get(line.number, []))
        if (
            index_tx is not None
            and line.start <= index_tx.date
            and (nxt is None or nxt.start > index_tx.date)
        ):
            line.includes_index_transplant = True
    _clip_regimens(lines, regimens)


def _close_line(line: Line, nxt: Line | None, exps: list[Exposure], transplants: list[dt.date]) -> None:
    ends: list[dt.date | None] = [e.end for e in exps] + list(transplants)
    line.end = latest_end(ends) if ends else line.start
    if nxt is not None and (line.end is None or line.end >= nxt.start):
        line.end = nxt.start - ONE_DAY
        if line.end_reason is None:
            line.end_reason = LineEnd.NEXT_LINE
    if line.end_reason is None and exps:
        last = max(exps, key=lambda e: (e.end or dt.date.max, e.start))
        line.end_reason = LineEnd.ONGOING if line.end is None else last.stop_reason


def _clip_regimens(lines: list[Line], regimens: list[Regimen]) -> None:
    """A regimen running when the next line starts ends the day before (for progression when
    a progression started that line)."""
    starts = {ln.number: ln for ln in lines}
    for reg in regimens:
        nxt = starts.get(reg.line + 1)
        if nxt is not None and (reg.end is None or reg.end >= nxt.start):
            reg.end = nxt.start - ONE_DAY
            reg.stop_reason = (
                LineEnd.PROGRESSION if nxt.start_rule in PROGRESSION_RULES else LineEnd.NEXT_LINE
            )
