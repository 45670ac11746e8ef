"""What every statistic does with its input before computing: rows with a missing time, event,
group or covariate are left out and counted (R's ``na.omit``, which says how many), and event
codes are checked (0/1 or boolean; R's 1/2 coding and anything else is refused, never read as
"every row an event")."""

from __future__ import annotations

import numpy as np
import pandas as pd


class StatisticsInputError(ValueError):
    """Input a statistic cannot use as given (a clear message, never a silent answer)."""


def complete_rows(df: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, int]:
    """The rows with a value in every one of ``columns``, and how many were left out."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise StatisticsInputError(f"no column {', '.join(missing)}")
    kept = df[columns].dropna()
    return df.loc[kept.index], len(df) - len(kept)


def event_indicator(values: pd.Series, column: str) -> np.ndarray:
    """A boolean event indicator from 0/1 or boolean values (missing values already removed)."""
    if values.dtype == bool or str(values.dtype) == "boolean":
        return values.to_numpy(dtype=bool)
    try:
        numbers = values.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise StatisticsInputError(f"{column} must be 0/1 or boolean; it has text values") from None
    found = set(np.unique(numbers).tolist())
    if not found <= {0.0, 1.0}:
        shown = ", ".join(f"{v:g}" for v in sorted(found)[:6])
        hint = " (R's 1 = censored, 2 = event coding? use status == 2)" if found <= {1.0, 2.0} else ""
        raise StatisticsInputError(f"{column} must be 0 (censored) or 1 (event); found {shown}{hint}")
    return numbers == 1.0


def durations(values: pd.Series, column: str) -> np.ndarray:
    """Follow-up times as floats, refusing negative or non-finite ones."""
    try:
        t = values.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise StatisticsInputError(f"{column} must be numeric") from None
    if not np.all(np.isfinite(t)):
        raise StatisticsInputError(f"{column} has infinite values")
    if (t < 0).any():
        raise StatisticsInputError(f"{column} has negative times")
    return t
