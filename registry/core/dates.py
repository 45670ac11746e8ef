"""Stored dates read back as ``date`` objects: PostgreSQL's driver returns dates, SQLite's
returns ISO text (a timestamp's text keeps its day)."""

from __future__ import annotations

import datetime as dt
from typing import Any


def as_date(v: Any) -> dt.date:
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)[:10])


def as_date_or_none(v: Any) -> dt.date | None:
    return None if v is None else as_date(v)
