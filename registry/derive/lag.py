"""(r3) Salvage begun before its progression was recorded.

Real exports often date a progression by the clinic letter or the confirming laboratory
result, a few days after the first dose of the salvage regimen it caused. A regimen that starts
up to ``progression_lag_days`` before the first record of a progression episode starts the next
line when it has a non-steroid drug not given in the current line, or its non-steroid rows record
intent ``salvage``; a refill of the current line's drugs without that intent never does. The
episode then divides lines, exposures and regimen windows on the regimen's start (its ``split``)
while the relapse keeps its documented date.
"""

from __future__ import annotations

import datetime as dt

from registry.core.enums import ExposureRole, Phase
from registry.derive.model import PROGRESSION_RULES, Derivation, Episode, Exposure, Line, Regimen
from registry.derive.params import DerivationParameters

ONE_DAY = dt.timedelta(days=1)


def recorded_later(dv: Derivation, p: DerivationParameters) -> list[tuple[Episode, dt.date]]:
    """The first episode (in date order) not yet placed whose progression was recorded after
    the salvage regimen it caused began, with that regimen's start; [] when there is none.
    One at a time: placing an episode changes the lines the next one is judged against."""
    index = dv.index_transplant
    for ep in dv.episodes:
        if ep.split is not None:
            continue
        earliest = ep.date - dt.timedelta(days=p.progression_lag_days)  # inclusive
        if index is not None and ep.date > index.date:
            earliest = max(earliest, index.date + ONE_DAY)  # never a line split before the transplant
        start = _salvage_start(dv, earliest, ep.date, p)
        if start is not None:
            return [(ep, start)]
    return []


def _line_drugs(dv: Derivation, p: DerivationParameters) -> dict[int, Exposure]:
    return {
        e.index: e
        for e in dv.exposures
        if e.role == ExposureRole.REGIMEN and not e.mobilisation and e.drug_class not in p.non_line_classes
    }


def _salvage_start(
    dv: Derivation, earliest: dt.date, recorded: dt.date, p: DerivationParameters
) -> dt.date | None:
    """The earliest start in [earliest, recorded) of a regimen that qualifies, or of a row
    recording intent ``salvage`` (its drug may have merged into the current line's exposure)."""
    liners = _line_drugs(dv, p)
    starts = []
    for reg in dv.regimens:
        if (
            earliest <= reg.start < recorded
            and reg.phase != Phase.MOBILISATION
            and _qualifies(dv, reg, recorded, liners)
        ):
            starts.append(reg.start)
            break
    for e in liners.values():
        for row in e.rows:
            if row.intent == "salvage" and earliest <= row.start < recorded:
                line = _current_line(dv, row.start)
                if line is not None and line.start < row.start:
                    starts.append(row.start)
    return min(starts, default=None)


def _current_line(dv: Derivation, day: dt.date) -> Line | None:
    started = [ln for ln in dv.lines if ln.start <= day]
    return started[-1] if started else None


def _qualifies(dv: Derivation, reg: Regimen, recorded: dt.date, liners: dict[int, Exposure]) -> bool:
    """A non-steroid drug not given in the current line, or non-steroid rows with intent salvage."""
    line = dv.line(reg.line)
    if line is None:
        return False
    current = reg.line
    if line.start == reg.start and dv.first_regimen(reg.line) is reg:
        if line.start_rule in PROGRESSION_RULES:
            return False  # another progression started that line: it is that one's treatment
        current = reg.line - 1  # the regimen started its line: the current line is the one before
        if current < 1:
            return False
    given = {
        liners[idx].drug
        for other in dv.regimens
        if other.line == current and other.start < reg.start
        for idx, _ in other.exposures
        if idx in liners
    }
    new = [liners[idx] for idx, continued in reg.exposures if not continued and idx in liners]
    if any(e.drug not in given for e in new):
        return True
    return any(r.intent == "salvage" and reg.start <= r.start < recorded for e in new for r in e.rows)
