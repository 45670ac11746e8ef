"""The column catalogue's vocabulary: what a column of an input file is (kind, required, allowed
codes with their synonyms, limits), the coded value sets several files share, the export
format's name and version, and the column names that look like direct identifiers (never read,
never stored). Each file's columns are listed with the file (``registry/contract/files.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
