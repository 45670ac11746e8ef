"""The Pandera schema of each input file, built from its column catalogue
(``registry/contract``): every check is named with the rule code it enforces. It validates the
typed frame the pre-parser produces (dates parsed with an explicit format, numbers coerced, coded
values mapped through their synonyms, parse failures already recorded as row reasons) — so
Pandera checks typed columns only, which keeps it vectorised (a single bad date makes Pandera's
own coercion element-wise)."""

from __future__ import annotations

from typing import Any

import pandera.pandas as pa

from registry.contract.columns import Column
from registry.contract.files import InputFile
from registry.contract.rules import RuleCode

# --------------------------------------------------------------------------- Pandera schemas
# They validate the typed frame the pre-parser produces (dates parsed, numbers coerced, codes
# mapped through their synonyms). Every check is named with its rule code; nullability is the
# ``required`` check, so that too reports under the rule's own name.
# Ids and text are strings of either kind (Arrow strings from the quote-free reader, objects
# from the csv module): their dtype is not checked (the pre-parser made them), codes are objects.
_DTYPES: dict[str, Any] = {"date": "datetime64[ns]", "number": "float64", "id": None, "text": None}


def _checks(col: Column) -> list[pa.Check]:
    checks = []
    if col.required:
        checks.append(pa.Check(lambda s: s.notna(), ignore_na=False, name=RuleCode.REQUIRED))
    if col.kind in ("id", "text"):
        checks.append(pa.Check(lambda s, n=col.max_length: s.str.len() <= n, name=RuleCode.TOO_LONG))
        checks.append(pa.Check(lambda s: ~s.str.contains("\x00", regex=False), name=RuleCode.NUL_CHARACTER))
    if col.kind == "code":
        checks.append(pa.Check(lambda s, ok=frozenset(col.allowed): s.isin(ok), name=RuleCode.NOT_ALLOWED))
    if col.positive:
        checks.append(pa.Check(lambda s: s > 0, name=RuleCode.MUST_BE_POSITIVE))
    return checks


_SCHEMAS: dict[str, pa.DataFrameSchema] = {}


def schema(contract: InputFile) -> pa.DataFrameSchema:
    """The Pandera schema of one input file, built from its column catalogue (once)."""
    if contract.name not in _SCHEMAS:
        _SCHEMAS[contract.name] = pa.DataFrameSchema(
            {
                c.name: pa.Column(_DTYPES.get(c.kind, object), checks=_checks(c), nullable=True, coerce=False)
                for c in contract.columns
            },
            name=contract.filename,
            strict=False,
        )
    return _SCHEMAS[contract.name]
