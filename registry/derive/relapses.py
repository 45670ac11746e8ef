"""Relapse episodes and refractoriness at each of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from registry.core.enums import ExposureRole, ProgressionSource
from registry.derive.model import LENALIDOMIDE, Episode, Exposure, Progression, Relapse, TransplantRow
from registry.derive.params import DerivationParameters


def relapse_episodes(
    progressions: list[Progression], index_tx: TransplantRow | None, p: DerivationParameters
) -> list[Episode]:
    """The progression episodes: records within ``relapse_episode_days`` after an episode's
    first record (inclusive) belong to it; an episode never spans the index transplant."""
    episodes: list[Episode] = []
    for pr in progressions:
        if episodes and (pr.date - episodes[-1].date).days <= p.relapse_episode_days:
            crosses_index = index_tx is not None and episodes[-1].date <= index_tx.date < pr.date
            if not crosses_index:
                # the same relapse documented again
                episodes[-1].events += pr.source == ProgressionSource.EVENT
                episodes[-1].sources.add(pr.source)
                continue
        episodes.append(
            Episode(
                pr.date,
                pr.source,
                pr.key,
                events=int(pr.source == ProgressionSource.EVENT),
                sources={pr.source},
            )
        )
    return episodes


def derive_relapses(
    episodes: list[Episode],
    exposures: list[Exposure],
    index_tx: TransplantRow | None,
    line_of: Callable[[dt.date], int | None],
    p: DerivationParameters,
) -> list[Relapse]:
    """One ``Relapse`` per episode, with refractoriness to each drug started before it and the
    lenalidomide facts; ``line_of`` names the line a progression dividing lines on a day
    happened in."""
    out: list[Relapse] = []
    first_after_done = False
    drug_exps = [e for e in exposures if e.role == ExposureRole.REGIMEN]
    for seq, ep in enumerate(episodes, start=1):
        day = ep.date
        after = index_tx is not None and day > index_tx.date
        first_after = after and not first_after_done
        first_after_done = first_after_done or first_after
        # an exposure starting on or after the progression is not running at it: it is the
        # next line's treatment, often dated on the same day; (r3) nor is one of the regimen
        # that began before the progression was recorded and started the next line for it
        before = [e for e in drug_exps if e.start < ep.splits_on]
        refractory: dict[str, bool] = {}
        for e in before:
            hit = e.end is None or e.end >= day or (day - e.end).days <= p.refractory_window_days
            refractory[e.drug] = refractory.get(e.drug, False) or hit
        len_days, len_free, last_dose = _lenalidomide_at([e for e in before if e.drug == LENALIDOMIDE], day)
        out.append(
            Relapse(
                sequence=seq,
                date=day,
                source=ep.source,
                source_key=ep.key,
                after_index_transplant=after,
                is_first_after_index=first_after,
                line=line_of(ep.splits_on),
                refractory=refractory,
                len_refractory=refractory.get(LENALIDOMIDE, False),
                len_last_dose=last_dose,
                len_exposure_days=len_days,
                len_free_interval_days=len_free,
                events=ep.events,
                recorded_later=ep.recorded_later,
                sources=ep.source_list,
            )
        )
    return out


def _lenalidomide_at(lens: list[Exposure], day: dt.date) -> tuple[int | None, int | None, float | None]:
    """Days on lenalidomide up to ``day``, days since its last dose (0 while it runs) and the
    last dose before it; all None without lenalidomide."""
    if not lens:
        return None, None, None
    days = sum((min(e.end or day, day) - e.start).days + 1 for e in lens)
    running = any(e.end is None or e.end >= day for e in lens)
    last_end = max((e.end for e in lens if e.end is not None), default=None)
    free = 0 if running or last_end is None else (day - last_end).days
    rows = [r for e in lens for r in e.rows if r.start < day]
    last_dose = max(rows, key=lambda r: (r.start, r.key)).dose if rows else None
    return days, free, last_dose
