"""Staging computed by the registry from its components, stored beside the stage a site
recorded (which the data-quality step compares with it).

R-ISS: stage I is ISS I with standard-risk FISH (del(17p), t(4;14) and t(14;16) all tested and
absent) and a normal LDH; stage III is ISS III with high-risk FISH (any of the three present)
or an elevated LDH; every other combination is stage II.

R2-ISS: points for ISS II (1), ISS III (1.5), del(17p) (1), an elevated LDH (1), t(4;14) (1)
and 1q gain (0.5); 0 points is stage I, 0.5-1 stage II, 1.5-2.5 stage III, 3-5 stage IV.

A component that is missing (not recorded, or the FISH not tested) does not make the stage
unknown when every value it could take gives the same stage (ISS II is R-ISS II whatever the
rest; ISS I with del(17p) present is R-ISS II whatever the LDH). Otherwise the stage is None.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pandas as pd

ISS = ("I", "II", "III")
FISH_KNOWN = ("present", "absent")


def _riss(iss: str, ldh: bool, del17p: bool, t414: bool, t1416: bool, gain1q: bool) -> str:
    high_risk = del17p or t414 or t1416
    if iss == "I" and not high_risk and not ldh:
        return "I"
    if iss == "III" and (high_risk or ldh):
        return "III"
    return "II"


def _r2iss(iss: str, ldh: bool, del17p: bool, t414: bool, t1416: bool, gain1q: bool) -> str:
    points = {"I": 0.0, "II": 1.0, "III": 1.5}[iss] + del17p + ldh + t414 + 0.5 * gain1q
    if points == 0:
        return "I"
    if points <= 1:
        return "II"
    if points <= 2.5:
        return "III"
    return "IV"


def _options(value: Any, known: tuple[Any, ...], as_value: Callable[[Any], Any]) -> tuple[Any, ...]:
    if value in known:
        return (as_value(value),)
    return tuple(as_value(k) for k in known)


def _stage(rule: Callable[..., str], row: tuple[Any, ...]) -> str | None:
    iss, ldh, del17p, t414, t1416, gain1q = row
    fish = [_options(v, FISH_KNOWN, lambda k: k == "present") for v in (del17p, t414, t1416, gain1q)]
    choices = [
        _options(iss, ISS, str),
        (bool(ldh),) if isinstance(ldh, bool) else (False, True),
        *fish,
    ]
    stages = {rule(*combo) for combo in itertools.product(*choices)}
    return stages.pop() if len(stages) == 1 else None


def riss_stage(iss: Any, ldh: Any, del17p: Any, t414: Any, t1416: Any) -> str | None:
    """R-ISS from its components (None where they leave it open)."""
    return _stage(_riss, (iss, ldh, del17p, t414, t1416, "absent"))


def r2iss_stage(iss: Any, ldh: Any, del17p: Any, t414: Any, gain1q: Any) -> str | None:
    """R2-ISS from its components (None where they leave it open)."""
    return _stage(_r2iss, (iss, ldh, del17p, t414, "absent", gain1q))


COMPONENTS = ("iss_stage", "ldh_elevated", "del17p", "t_4_14", "t_14_16", "gain_1q")


def stages(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """R-ISS and R2-ISS of every row of a frame with the columns of ``COMPONENTS`` (ISS as I,
    II, III or missing; LDH elevated as a boolean or missing; FISH as present, absent,
    not_tested or missing), each combination computed once."""

    def clean(v: Any) -> Any:
        return None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else v

    rows = [tuple(clean(v) for v in r) for r in frame[list(COMPONENTS)].itertuples(index=False, name=None)]
    riss: dict[tuple[Any, ...], str | None] = {}
    r2iss: dict[tuple[Any, ...], str | None] = {}
    for r in set(rows):
        iss, ldh, d17, t414, t1416, g1q = r
        ldh = bool(ldh) if ldh is not None else None
        riss[r] = riss_stage(iss, ldh, d17, t414, t1416)
        r2iss[r] = r2iss_stage(iss, ldh, d17, t414, g1q)
    index = frame.index
    return (
        pd.Series([riss[r] for r in rows], index=index, dtype=object),
        pd.Series([r2iss[r] for r in rows], index=index, dtype=object),
    )
