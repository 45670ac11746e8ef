"""Relapse episodes and refractoriness at each of them."""

from __future__ import annotations

from collections.abc import Callable

from registry.core.enums import ExposureRole
from registry.derive.model import LENALIDOMIDE, Exposure, Progression, Relapse, TransplantRow
from registry.derive.params import DerivationParameters


def relapse_episodes(
    progressions: list[Progression], index_tx: TransplantRow | None, p: DerivationParameters
) -> list[Progression]:
    """The first record of each episode: records within ``relapse_episode_days`` after an
    episode's first record (inclusive) belong to it; an episode never spans the index
    transplant."""
    episodes: list[Progression] = []
    for pr in progressions:
        if episodes and (pr.date - episodes[-1].date).days <= p.relapse_episode_days:
            crosses_index = index_tx is not None and episodes[-1].date <= index_tx.date < pr.date
            if not crosses_index:
                continue  # the same relapse documented twice (event and stop reason)
        episodes.append(pr)
    return episodes


def derive_relapses(
    progressions: list[Progression],
    exposures: list[Exposure],
    index_tx: TransplantRow | None,
    line_of: Callable[[Progression], int | None],
    p: DerivationParameters,
) -> list[Relapse]:
    """One ``Relapse`` per episode, with refractoriness to each drug started before it and the
    lenalidomide facts; ``line_of`` names the line a progression happened in."""
    out: list[Relapse] = []
    first_after_done = False
    drug_exps = [e for e in exposures if e.role == ExposureRole.REGIMEN]
    for seq, pr in enumerate(relapse_episodes(progressions, index_tx, p), start=1):
        after = index_tx is not None and pr.date > index_tx.date
        first_after = after and not first_after_done
        first_after_done = first_after_done or first_after
        # an exposure starting on or after the progression is not running at it: it is the
        # next line's treatment, often dated on the same day
        before = [e for e in drug_exps if e.start < pr.date]
        refractory: dict[str, bool] = {}
        for e in before:
            hit = e.end is None or e.end >= pr.date or (pr.date - e.end).days <= p.refractory_window_days
            refractory[e.drug] = refractory.get(e.drug, False) or hit
        lens = [e for e in before if e.drug == LENALIDOMIDE]
        len_days = None
        len_free = None
        last_dose = None
        if lens:
            len_days = sum((min(e.end or pr.date, pr.date) - e.start).days + 1 for e in lens)
            running = any(e.end is None or e.end >= pr.date for e in lens)
            last_end = max((e.end for e in lens if e.end is not None), default=None)
            len_free = 0 if running or last_end is None else (pr.date - last_end).days
            rows = [r for e in lens for r in e.rows if r.start < pr.date]
            last_dose = max(rows, key=lambda r: (r.start, r.key)).dose if rows else None
        out.append(
            Relapse(
                sequence=seq,
                date=pr.date,
                source=pr.source,
                source_key=pr.key,
                after_index_transplant=after,
                is_first_after_index=first_after,
                line=line_of(pr),
                refractory=refractory,
                len_refractory=refractory.get(LENALIDOMIDE, False),
                len_last_dose=last_dose,
                len_exposure_days=len_days,
                len_free_interval_days=len_free,
            )
        )
    return out
