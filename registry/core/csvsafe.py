"""CSV cells that are safe to open in a spreadsheet: a text cell starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return would be read as a formula (a hostile drug name in an
export could run one), so such a cell gets a leading apostrophe unless it is a number."""

from __future__ import annotations

import re
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def safe_cell(value: Any) -> Any:
    """``value`` unchanged unless it is text a spreadsheet would take for a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.match(value):
        return "'" + value
    return value
