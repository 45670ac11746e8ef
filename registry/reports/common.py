"""What every report computation shares: months from days, numbers made safe for JSON, and
warnings whose counts the release step can hide."""

from __future__ import annotations

import math
from typing import Any

from registry.core.units import DAYS_PER_MONTH


def months(days: float | None) -> float | None:
    return None if days is None else round(days / DAYS_PER_MONTH, 8)


def rounded(x: float | None, nd: int = 8) -> float | None:
    """Rounded; None for a value that is not a finite number (JSON has no NaN or Infinity)."""
    return None if x is None or not math.isfinite(float(x)) else round(float(x), nd)


def warn(
    warnings: list[dict[str, Any]], text: str, cells: dict[str, list[Any]] | None = None, **counts: int
) -> None:
    """A warning whose ``{name}`` fields are counts (the release step shows small ones as <N);
    ``cells`` links a count to the report cell holding the same number (the warning then shows
    what that cell shows)."""
    warnings.append({"text": text, "counts": counts, **({"cells": cells} if cells else {})})
