"""The response of every derived line, and the progressions the laboratory series documents.

The engine (``response.py``) judges one line from the samples; this module gives it the lines
the derivation formed (each line's start, the next line's start, and the starts of drugs the
line had not given, which can confirm a PD), falls back on recorded response assessments where
the series cannot judge a line, and names the laboratory progressions that join the relapse
episodes (docs/derivations.md, "Response and progression from the laboratory series").
"""

from __future__ import annotations

import datetime as dt
import itertools

from registry.core.enums import ExposureRole, ProgressionSource
from registry.derive.model import Derivation, LineOutcome, PatientInputs, Progression
from registry.derive.params import DerivationParameters
from registry.derive.response import RANK, Line, LineResponse, line_response, series_of

LABS, RECORDED, NOT_EVALUABLE = "labs", "recorded", "not_evaluable"
PR = RANK["PR"]  # a response: PR or better


def judge_lines(
    inp: PatientInputs, dv: Derivation, p: DerivationParameters, seen: dict[Line, LineResponse] | None = None
) -> list[LineOutcome]:
    """One outcome per derived line: from the laboratory series when its baseline is
    measurable, else from the response assessments recorded during it, else not evaluable.
    ``seen`` keeps the lines judged by an earlier pass (a line that did not change is not
    judged again)."""
    seen = {} if seen is None else seen
    series = None  # indexed when a line needs judging (not when every line was judged before)
    out = []
    for i, ln in enumerate(dv.lines):
        nxt = dv.lines[i + 1].start if i + 1 < len(dv.lines) else None
        judged = None
        if inp.labs:
            line = Line(ln.number, ln.start, nxt, _new_drug_starts(dv, ln.number, ln.start, p))
            judged = seen.get(line)
            if judged is None:
                series = series or series_of(inp.labs)
                judged = seen[line] = line_response(series, line, p.response)
        if judged is not None and judged.best != NOT_EVALUABLE:
            out.append(_from_labs(ln.number, judged))
        else:
            out.append(_from_records(inp, ln.number, ln.start, nxt, judged))
    return out


def _from_labs(number: int, judged: LineResponse) -> LineOutcome:
    best, best_date = judged.best, judged.best_date
    if best is None and judged.progression is not None:
        best, best_date = "PD", judged.progression  # no response before its progression
    # the first assessment at PR or better that the next one confirms (it meets PR or better
    # too: a VGPR followed by a PR is a confirmed PR, dated by the VGPR)
    responded = next(
        (
            a.date
            for a, b in itertools.pairwise(judged.assessments)
            if "PD" not in (a.category, b.category) and min(RANK[a.category], RANK[b.category]) >= PR
        ),
        None,
    )
    return LineOutcome(number, LABS, best, best_date, judged, responded)


def _from_records(
    inp: PatientInputs, number: int, start: dt.date, nxt: dt.date | None, judged: LineResponse | None
) -> LineOutcome:
    """The best response assessment recorded during the line (after its start, before the
    next line's), or not evaluable."""
    recorded = [
        e
        for e in inp.events
        if e.type == "response_assessment"
        and e.response in RANK
        and start < e.date
        and (nxt is None or e.date < nxt)
    ]
    if not recorded:
        return LineOutcome(number, NOT_EVALUABLE, None, None, judged)
    top = max(recorded, key=lambda e: (RANK[e.response or ""], -e.date.toordinal()))
    responded = min((e.date for e in recorded if RANK[e.response or ""] >= PR), default=None)
    return LineOutcome(number, RECORDED, top.response, top.date, judged, responded)


def _new_drug_starts(
    dv: Derivation, number: int, start: dt.date, p: DerivationParameters
) -> tuple[dt.date, ...]:
    """Starts, after the line's, of exposures to a non-steroid drug the line had not given by
    then (a drug added to the line later counts: it was not given when the PD was found)."""
    liners = {
        e.index: e
        for e in dv.exposures
        if e.role == ExposureRole.REGIMEN and not e.mobilisation and e.drug_class not in p.non_line_classes
    }
    in_line = [liners[i] for r in dv.regimens if r.line == number for i, _ in r.exposures if i in liners]
    return tuple(
        sorted(
            {
                e.start
                for e in liners.values()
                if e.start > start and not any(x.drug == e.drug and x.start < e.start for x in in_line)
            }
        )
    )


def lab_progressions(outcomes: list[LineOutcome]) -> list[Progression]:
    """The confirmed laboratory progressions (one a line at most), dated by their first PD
    sample and keyed by it."""
    found = []
    for o in outcomes:
        r = o.labs
        if r is None or r.progression is None:
            continue
        found.append(Progression(r.progression, ProgressionSource.LABS, r.progression_key or ""))
    return found


def day100_response(dv: Derivation, outcomes: list[LineOutcome], p: DerivationParameters) -> str | None:
    """Line 1's derived category at the assessment nearest day 100 after the index transplant,
    within ``response.day100_window_days`` of it (the later of two as near)."""
    if dv.index_transplant is None or not outcomes or outcomes[0].labs is None:
        return None
    target = dv.index_transplant.date + dt.timedelta(days=100)
    window = p.response.day100_window_days
    near = [
        a
        for a in outcomes[0].labs.assessments
        if a.date > dv.index_transplant.date and abs((a.date - target).days) <= window
    ]
    if not near:
        return None
    return min(near, key=lambda a: (abs((a.date - target).days), -a.date.toordinal())).category
