"""Relapse episodes and refractoriness at each of them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from registry.core.enums import ExposureRole, ProgressionSource
from registry.derive.model import DrugAtRelapse, Episode, Exposure, Progression, Relapse, TransplantRow
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
    """One ``Relapse`` per episode, with each drug started before it as it stood then
    (refractory, days on it, drug-free interval, last dose); ``line_of`` names the line a
    progression dividing lines on a day happened in."""
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
        before: dict[str, list[Exposure]] = {}
        for e in drug_exps:
            if e.start < ep.splits_on:
                before.setdefault(e.drug, []).append(e)
        out.append(
            Relapse(
                sequence=seq,
                date=day,
                source=ep.source,
                source_key=ep.key,
                after_index_transplant=after,
                is_first_after_index=first_after,
                line=line_of(ep.splits_on),
                drugs={drug: _drug_at(exps, day, p) for drug, exps in before.items()},
                events=ep.events,
                recorded_later=ep.recorded_later,
                sources=ep.source_list,
            )
        )
    return out


def _drug_at(exps: list[Exposure], day: dt.date, p: DerivationParameters) -> DrugAtRelapse:
    """One drug's exposures before a relapse on ``day``: refractory (running at it, or ended
    within the refractory window before it), days on it up to the day, days since its last day
    (0 while it runs) and the last dose recorded before the day."""
    running = any(e.end is None or e.end >= day for e in exps)
    refractory = running or any(
        e.end is not None and (day - e.end).days <= p.refractory_window_days for e in exps
    )
    days = sum((min(e.end or day, day) - e.start).days + 1 for e in exps)
    last_end = max((e.end for e in exps if e.end is not None), default=None)
    free = 0 if running or last_end is None else (day - last_end).days
    rows = [r for e in exps for r in e.rows if r.start < day]
    last_dose = max(rows, key=lambda r: (r.start, r.key)).dose if rows else None
    return DrugAtRelapse(refractory, days, free, last_dose)
