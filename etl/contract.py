"""The input contract (export format version 1), written once: per file, the column catalogue
(required, kind, allowed values and their synonyms, limits). The pre-parser, the Pandera
schema of each file (``schema``: its checks are named with the rule codes of
``etl/rules.py``) and ``docs/input-contract.md`` are all built from it.

The pre-parser turns every column into its typed form (dates parsed with an explicit format,
numbers coerced, coded values mapped through their synonyms) and records parse failures as
row reasons itself — Pandera then validates typed columns only, which keeps it vectorised
(see ENGINEERING-NOTES: a single bad date makes Pandera's own coercion element-wise).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandera.pandas as pa

from etl.rules import RuleCode

FORMAT = "mm-registry-export"
FORMAT_VERSION = 1
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 200

RESPONSES = {
    "scr": "sCR",
    "stringent complete response": "sCR",
    "cr": "CR",
    "complete response": "CR",
    "vgpr": "VGPR",
    "very good partial response": "VGPR",
    "pr": "PR",
    "partial response": "PR",
    "mr": "MR",
    "minimal response": "MR",
    "minor response": "MR",
    "sd": "SD",
    "stable disease": "SD",
    "pd": "PD",
    "progressive disease": "PD",
}
YES_NO = {"yes": "yes", "no": "no"}
FISH = {
    "present": "present",
    "absent": "absent",
    "not_tested": "not_tested",
    "not tested": "not_tested",
}


def identity(*values: str) -> dict[str, str]:
    """Coded values accepted as written (any case)."""
    return {v.lower(): v for v in values}


@dataclass(frozen=True)
class Column:
    """One column of an input file: kind, required, allowed codes with synonyms, limits."""

    name: str
    kind: str  # id | date | number | code | text
    required: bool = False
    codes: dict[str, str] = field(default_factory=dict)  # lower-case synonym -> canonical
    max_length: int = MAX_TEXT_LENGTH  # ids: MAX_ID_LENGTH (set in __post_init__)
    description: str = ""
    positive: bool = False  # a number that must be > 0
    maximum: float = 1e6  # numbers: larger is no plausible value (doses are mg or mg/m2)

    def __post_init__(self) -> None:
        if self.kind == "id":
            object.__setattr__(self, "max_length", MAX_ID_LENGTH)

    @property
    def allowed(self) -> list[str]:
        return sorted(set(self.codes.values()))


@dataclass(frozen=True)
class FileContract:
    """One input file's name, source id, pseudonym namespace and columns."""

    name: str  # file name without .csv
    id_column: str
    id_namespace: str  # the <file> part of the pseudonym recipe
    columns: tuple[Column, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


# Columns that look like direct identifiers: never read into the registry.
IDENTIFIER_NAMES = {
    "name",
    "first_name",
    "last_name",
    "surname",
    "given_name",
    "full_name",
    "patient_name",
    "maiden_name",
    "address",
    "street",
    "postcode",
    "zip",
    "zip_code",
    "postal_code",
    "phone",
    "telephone",
    "mobile",
    "email",
    "e_mail",
    "ssn",
    "social_security_number",
    "national_id",
    "nhs_number",
    "health_card_number",
    "insurance_number",
    "passport",
    "mrn_raw",
    "mrn",
    "medical_record_number",
}
IDENTIFIER_FRAGMENTS = ("name", "address", "phone", "email", "ssn", "passport", "national_id")


def looks_like_identifier(column: str) -> bool:
    """Whether a column name looks like a direct identifier (never read, never stored)."""
    return column in IDENTIFIER_NAMES or any(f in column for f in IDENTIFIER_FRAGMENTS)


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


def schema(contract: FileContract) -> pa.DataFrameSchema:
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
