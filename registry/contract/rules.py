"""The rule catalogue: every check an input row can fail, with its code, severity, the files it
applies to, the message recorded with the row and a line for the docs.

A rule's files follow from the column catalogue (``files.py``) wherever the rule is about a kind
of column or a place in the contract: a date rule applies to every file with a date, the orphan
rule to every file under a patient. Only a file's own rules (a patient's age at diagnosis, a
follow-up's death date, a laboratory value's unit) name their file. So a new input file gets the
shared rules from its columns, and this module changes only for rules of its own.

A ``blocking`` rule quarantines the row (kept with every reason, not loaded). An ``advisory``
rule loads the row and records a finding (``input_findings``). The ETL's Pandera checks are
named with these codes; validation, the quarantine, the generated docs
(``docs/input-contract.md``), the synthetic generator's bad rows and the tests all read this one
catalogue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from registry.contract.files import INPUT_FILES, InputFile


class Severity(StrEnum):
    """What a failing rule does to the row."""

    BLOCKING = "blocking"
    ADVISORY = "advisory"


class RuleCode(StrEnum):
    # the row itself
    """Every rule's code, as stored with the reasons."""

    WRONG_FIELD_COUNT = "wrong_field_count"
    DUPLICATE_ID = "duplicate_id"
    # one value
    REQUIRED = "required"
    INVALID_DATE = "invalid_date"
    INVALID_NUMBER = "invalid_number"
    NOT_ALLOWED = "not_allowed"
    MUST_BE_POSITIVE = "must_be_positive"
    TOO_LONG = "too_long"
    NUL_CHARACTER = "nul_character"
    STRAY_QUOTE = "stray_quote"
    OUT_OF_RANGE = "out_of_range"
    DATE_BEFORE_1900 = "date_before_1900"
    DATE_AFTER_CUTOFF = "date_after_cutoff"
    # values of one row
    BIRTH_NOT_BEFORE_DIAGNOSIS = "birth_not_before_diagnosis"
    AGE_AT_DIAGNOSIS = "age_at_diagnosis"
    END_BEFORE_START = "end_before_start"
    DEATH_DATE_REQUIRED = "death_date_required"
    DEATH_DATE_NOT_ALLOWED = "death_date_not_allowed"
    # across files
    ORPHAN = "orphan"
    BEFORE_DIAGNOSIS = "before_diagnosis"
    TRANSPLANT_BEFORE_DIAGNOSIS = "transplant_before_diagnosis"
    AFTER_DEATH = "after_death"
    AFTER_LAST_CONTACT = "after_last_contact"
    # laboratory values (labs.csv)
    LAB_VALUE = "lab_value"
    LAB_UNIT = "lab_unit"
    LAB_IMPLAUSIBLE = "lab_implausible"
    # advisory: the row loads, the finding is recorded
    RESPONSE_MISSING = "response_missing"


# A rule's scope: a test of a contract file, or (a file's own rule) the names of its files.
Scope = Callable[[InputFile], bool] | tuple[str, ...]


def every_file(f: InputFile) -> bool:
    return True


def with_required(f: InputFile) -> bool:
    return bool(f.required)


def with_dates(f: InputFile) -> bool:
    return f.has("date")


def with_numbers(f: InputFile) -> bool:
    return f.has("number")


def with_positive_numbers(f: InputFile) -> bool:
    return any(c.positive for c in f.columns)


def with_codes(f: InputFile) -> bool:
    return f.has("code")


def with_strings(f: InputFile) -> bool:
    return f.has("id") or f.has("text")


def with_dates_within_cutoff(f: InputFile) -> bool:
    """Dates after the data cutoff are refused (not in follow-up: a later contact is censored)."""
    return f.has("date") and not f.dates_beyond_cutoff


def under_a_patient(f: InputFile) -> bool:
    return not f.is_root


def events_in_follow_up(f: InputFile) -> bool:
    """A file of events during follow-up: under a patient, its dates within the cutoff (the
    follow-up record itself gives the last contact)."""
    return not f.is_root and not f.dates_beyond_cutoff


@dataclass(frozen=True)
class Rule:
    """A rule of the catalogue."""

    code: RuleCode
    severity: Severity
    files: tuple[str, ...]  # the contract's files it applies to (from its scope)
    message: str  # recorded with each failing row (some rules add detail to it)
    doc: str  # the rule in one sentence, for docs/input-contract.md


_SPECS: tuple[tuple[RuleCode, Scope, str, str], ...] = (
    # code, the files it applies to, message recorded with the row, the rule for the docs
    (
        RuleCode.WRONG_FIELD_COUNT,
        every_file,
        "the row has a different number of fields than the header",
        "the record has more or fewer fields than the header (its values are not stored)",
    ),
    (
        RuleCode.DUPLICATE_ID,
        every_file,
        "the source id occurs more than once in the file",
        "the source id occurs more than once in the file: every copy is invalid",
    ),
    (RuleCode.REQUIRED, with_required, "required value is empty", "a required value is empty"),
    (
        RuleCode.INVALID_DATE,
        with_dates,
        "not a date in YYYY-MM-DD form",
        "not a date in YYYY-MM-DD form: four, two and two ASCII digits (`2025-1-5` and full-width "
        "digits are not)",
    ),
    (
        RuleCode.INVALID_NUMBER,
        with_numbers,
        "not a plain decimal number",
        "not a plain decimal number",
    ),
    (
        RuleCode.NOT_ALLOWED,
        with_codes,
        "value not allowed here",
        "a coded value outside the allowed set (the synonyms below are accepted, any case)",
    ),
    (
        RuleCode.MUST_BE_POSITIVE,
        with_positive_numbers,
        "must be greater than 0",
        "a number that must be > 0 (doses)",
    ),
    (
        RuleCode.TOO_LONG,
        with_strings,
        "value is too long",
        "an id over 128 characters or a text over its limit (drug 200, conditioning agent 80)",
    ),
    (
        RuleCode.NUL_CHARACTER,
        with_strings,
        "value contains a NUL byte",
        "an id or text with a NUL (0x00) byte: no database stores it faithfully (PostgreSQL refuses it)",
    ),
    (
        RuleCode.STRAY_QUOTE,
        every_file,
        "value holds a line break, or an id, date or code holds a quote (a stray quote joined lines?)",
        "a value holding a line break, or an id, date or coded value holding a quote character: a "
        "stray quote in the export made one record of several lines (the record is quarantined with "
        "its line number; stored values end at their first line break)",
    ),
    (
        RuleCode.OUT_OF_RANGE,
        with_numbers,
        "number outside the plausible range",
        "a number above its column's plausible maximum (1,000,000 for doses): not a value, a typo",
    ),
    (RuleCode.DATE_BEFORE_1900, with_dates, "date before 1900-01-01", "any date before 1900-01-01"),
    (
        RuleCode.DATE_AFTER_CUTOFF,
        with_dates_within_cutoff,
        "date after the data cutoff",
        "any date after the manifest's data_cutoff (follow-up dates excepted: they are kept and "
        "censored at the cutoff)",
    ),
    (
        RuleCode.BIRTH_NOT_BEFORE_DIAGNOSIS,
        ("patients",),
        "birth_date must be before diagnosis_date",
        "birth_date must be before diagnosis_date",
    ),
    (
        RuleCode.AGE_AT_DIAGNOSIS,
        ("patients",),
        "age at diagnosis must be between 18 and 110 years",
        "age at diagnosis outside 18-110 years",
    ),
    (
        RuleCode.END_BEFORE_START,
        ("treatments",),
        "end_date before start_date",
        "treatment end_date before start_date",
    ),
    (
        RuleCode.DEATH_DATE_REQUIRED,
        ("follow_up",),
        "death_date is required when vital_status is dead",
        "vital_status dead without death_date",
    ),
    (
        RuleCode.DEATH_DATE_NOT_ALLOWED,
        ("follow_up",),
        "death_date must be empty unless vital_status is dead",
        "death_date while vital_status is not dead",
    ),
    (
        RuleCode.ORPHAN,
        under_a_patient,
        "patient_id not in patients.csv (or its row there was quarantined)",
        "patient_id not in patients.csv, or its row there was quarantined (incremental bundles: "
        "also accepted if the patient is current in the registry)",
    ),
    (
        RuleCode.BEFORE_DIAGNOSIS,
        ("follow_up",),
        "date before the patient's diagnosis_date",
        "death or last contact before diagnosis",
    ),
    (
        RuleCode.TRANSPLANT_BEFORE_DIAGNOSIS,
        ("transplants",),
        "transplant more than 30 days before diagnosis",
        "transplant more than 30 days before diagnosis",
    ),
    (
        RuleCode.AFTER_DEATH,
        under_a_patient,
        "date after the patient's death",
        "a date after the patient's death_date",
    ),
    (
        RuleCode.AFTER_LAST_CONTACT,
        events_in_follow_up,
        "date after the patient's last_contact_date",
        "a date after the patient's last_contact_date (an ongoing treatment's missing end date never counts)",
    ),
    (
        RuleCode.LAB_VALUE,
        ("labs",),
        "the value cannot be read for its test",
        "a laboratory value that is not a non-negative number (or positive/negative for an "
        "immunofixation; `<x` and `not detected` are read as 0 for an M-protein only)",
    ),
    (
        RuleCode.LAB_UNIT,
        ("labs",),
        "unit not known for this test",
        "a unit not known for its test (each test's units and conversions are listed below)",
    ),
    (
        RuleCode.LAB_IMPLAUSIBLE,
        ("labs",),
        "value implausible for this test",
        "a value above the test's plausible maximum (serum M-protein 20 g/dL, urine 50,000 mg/24h, "
        "free light chain 100,000 mg/L, marrow plasma cells 100%)",
    ),
    (
        RuleCode.RESPONSE_MISSING,
        ("disease_events",),
        "a response assessment without a response",
        "a response_assessment event without its IMWG response (loaded; recorded as a finding)",
    ),
)
ADVISORY = {RuleCode.RESPONSE_MISSING}


def severity(code: RuleCode) -> Severity:
    return Severity.ADVISORY if code in ADVISORY else Severity.BLOCKING


def files_of(scope: Scope, files: tuple[InputFile, ...] = INPUT_FILES) -> tuple[str, ...]:
    """The names of the files (default: the contract's) a rule of this scope applies to."""
    if isinstance(scope, tuple):
        return tuple(f.name for f in files if f.name in scope)
    return tuple(f.name for f in files if scope(f))


CATALOGUE: dict[RuleCode, Rule] = {
    code: Rule(code, severity(code), files_of(scope), message, doc) for code, scope, message, doc in _SPECS
}
SCOPES: dict[RuleCode, Scope] = {code: scope for code, scope, _, _ in _SPECS}
assert set(CATALOGUE) == set(RuleCode), "every rule code has its catalogue entry"


@dataclass(frozen=True)
class Reason:
    """Why a row failed: the rule, the column and value (source ids pseudonymised before
    anything is stored), the rule's severity and the message."""

    rule: RuleCode
    column: str | None
    value: Any
    severity: Severity
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "value": self.value,
            "rule": str(self.rule),
            "severity": str(self.severity),
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reason:
        return cls(
            RuleCode(data["rule"]),
            data.get("column"),
            data.get("value"),
            Severity(data.get("severity", Severity.BLOCKING)),
            data["message"],
        )


def reason(code: RuleCode, column: str | None, value: Any, detail: str | None = None) -> Reason:
    """The reason for rule ``code``, its catalogue message with an optional detail."""
    rule = CATALOGUE[code]
    message = f"{rule.message} ({detail})" if detail else rule.message
    return Reason(code, column, value, rule.severity, message)


@dataclass
class RejectedRow:
    """A row kept out of the registry: its file, row number (the header is row 1), every
    reason, and its values as stored in the quarantine (source ids as pseudonyms)."""

    file: str
    row_number: int
    reasons: list[Reason]
    row_data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "row_number": self.row_number,
            "reasons": [r.to_json() for r in self.reasons],
            "row_data": self.row_data,
        }
