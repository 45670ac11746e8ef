"""Validate: parse each chunk into typed columns, run the Pandera schema of its file, then the
plausibility and cross-file rules. Every failing row is collected with every reason found
(column, value, rule code, severity, message — the rules are those of ``registry/contract/rules.py``); the
rest is returned typed and clean.

Cross-file rules need per-patient facts (diagnosis, death, last contact): ``PatientFacts``
holds them for the bundle's valid patients — memory grows with the number of patients, never
with the number of treatment or event rows (those stream in chunks).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from etl.schema import schema
from etl.specs.base import FileSpec, RuleContext
from registry.contract.rules import Reason, RuleCode, Severity, reason

ISO_DATE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # the contract's dates: four, two and two ASCII digits

MIN_DATE = pd.Timestamp("1900-01-01")
MAX_REASON_VALUE = 120


def _short(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = first_line(str(value))
    return text if len(text) <= MAX_REASON_VALUE else text[:MAX_REASON_VALUE] + "…"


def first_line(text: str) -> str:
    """A value up to its first line break: what a stray quote swallowed after it (other
    records, their ids) is never stored, not even in the quarantine."""
    cut = min((i for i in (text.find("\n"), text.find("\r")) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut] + "…"


@dataclass
class ChunkResult:
    """A validated chunk: the valid typed rows, the rejected rows' reasons and raw values, the findings."""

    valid: pd.DataFrame  # typed rows that passed every blocking rule (index = source row number)
    reasons: dict[int, list[Reason]]  # rejected rows: source row number -> every reason
    raw: pd.DataFrame  # the raw strings of the rejected rows (index = source row number)
    findings: dict[int, list[Reason]] = field(default_factory=dict)  # valid rows' advisory reasons


class ReasonLog:
    """Reasons collected per source row while a chunk is checked."""

    def __init__(self) -> None:
        self.by_row: dict[int, list[Reason]] = defaultdict(list)

    def add(
        self,
        mask: pd.Series,
        column: str | None,
        values: pd.Series | None,
        code: RuleCode,
        detail: str | None = None,
    ) -> None:
        """Record rule ``code`` (with an optional detail to its message) for every row in
        ``mask``, with the row's value of ``column``."""
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        rows = mask.index[mask.to_numpy()]
        vals = values.loc[rows] if values is not None else [None] * len(rows)
        for row, val in zip(rows, vals, strict=True):
            self.by_row[int(row)].append(reason(code, column, _short(val), detail))


@dataclass
class PatientFacts:
    """Per-patient dates of the bundle's valid patients (or, when the patient files were
    delivered again unchanged, of the site's current patients), indexed by patient pseudonym."""

    # key (the patient pseudonym, also the index) and the dates the cross-file rules compare against
    frame: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["key", "birth_date", "diagnosis_date", "death_date", "last_contact_date"]
        )
    )
    # incremental mode: pseudonyms of the site's current patients already in the registry
    registry_patients: set[str] | None = None
    # rows a file collected for the facts until the file is complete (follow-up)
    pending: list[pd.DataFrame] = field(default_factory=list)


def _stray_quotes(contract: FileSpec, chunk: pd.DataFrame, log: ReasonLog) -> None:
    """Values read by the csv module (after a file's first quote) may hold what a stray quote
    swallowed: a line break in any value, or a quote in an id, date or code. Arrow strings come
    from quote-free lines, which hold neither."""
    for col in contract.columns:
        raw = chunk[col.name]
        if isinstance(raw.dtype, pd.StringDtype):
            continue
        text = raw.astype(str)
        bad = text.str.contains("\n", regex=False) | text.str.contains("\r", regex=False)
        if col.kind in ("id", "date", "code"):
            bad |= text.str.contains('"', regex=False)
        log.add(bad, col.name, raw, RuleCode.STRAY_QUOTE)


def parse_typed(contract: FileSpec, chunk: pd.DataFrame, log: ReasonLog) -> pd.DataFrame:
    """Strings -> typed columns. Parse failures go to the log; failed cells become null."""
    typed = pd.DataFrame(index=chunk.index)
    _stray_quotes(contract, chunk, log)
    for col in contract.columns:
        raw = chunk[col.name]
        empty = raw == ""
        if col.kind == "date":
            iso = raw.str.fullmatch(ISO_DATE).fillna(False).astype(bool)  # ASCII digits only
            parsed = pd.to_datetime(raw.where(~empty & iso), format="%Y-%m-%d", errors="coerce")
            log.add(parsed.isna() & ~empty, col.name, raw, RuleCode.INVALID_DATE)
            typed[col.name] = parsed
        elif col.kind == "number":
            parsed = pd.to_numeric(raw.where(~empty), errors="coerce").astype("float64")
            bad = (parsed.isna() | np.isinf(parsed)) & ~empty  # "NaN", "inf", "1,5": not a number here
            log.add(bad, col.name, raw, RuleCode.INVALID_NUMBER)
            huge = parsed.abs() > col.maximum  # 1.8e308 parses; no dose is that
            log.add(huge, col.name, raw, RuleCode.OUT_OF_RANGE)
            parsed = parsed.where(~huge)
            typed[col.name] = parsed.astype("float64")
        elif col.kind == "code":
            lowered = raw.str.lower()
            mapped = lowered.map(col.codes)
            # unknown codes stay as written so Pandera's isin check reports them
            typed[col.name] = mapped.where(mapped.notna(), raw.where(~empty)).astype(object)
        else:
            # ids and text keep the column's strings: Arrow strings (a chunk of quote-free
            # lines) check nulls and lengths by kernels; the csv module's path gives objects
            kept = raw.where(~empty)
            typed[col.name] = kept if isinstance(kept.dtype, pd.StringDtype) else kept.astype(object)
    return typed


def run_pandera(spec: FileSpec, typed: pd.DataFrame, chunk: pd.DataFrame, log: ReasonLog) -> None:
    """The file's Pandera schema, lazily: every failing cell under its check's rule code."""
    try:
        schema(spec).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as err:
        fc = err.failure_cases
        fc = fc[fc["index"].notna()]
        for (column, check), group in fc.groupby(["column", "check"], dropna=False):
            idx = pd.Index(group["index"].astype(int).unique())
            col = str(column) if isinstance(column, str) else None
            code = RuleCode(str(check))
            detail = None
            if code is RuleCode.REQUIRED and col in chunk.columns:
                # a value that failed to parse is already reported as invalid, not as empty
                idx = idx[(chunk.loc[idx, col] == "").to_numpy()]
            elif code is RuleCode.NOT_ALLOWED and col is not None:
                detail = "allowed: " + ", ".join(spec.column(col).allowed)
            mask = pd.Series(True, index=idx)
            values = chunk[col].loc[idx] if col in chunk.columns else None
            log.add(mask, col, values, code, detail)


def check_chunk(
    spec: FileSpec,
    chunk: pd.DataFrame,
    cutoff: dt.date,
    facts: PatientFacts,
    patient_keys: pd.Series | None = None,
) -> ChunkResult:
    """Validate one chunk of ``spec``'s file: typed parsing, the Pandera schema, the dates
    every file shares, the patient link (children of ``patients.csv``) and the file's own
    rules. ``patient_keys`` (the rows' patient pseudonyms) is required for the children of
    ``patients.csv``: the facts are found by pseudonym."""
    log = ReasonLog()
    typed = parse_typed(spec, chunk, log)
    run_pandera(spec, typed, chunk, log)
    cut = pd.Timestamp(cutoff)
    for col in (c.name for c in spec.columns if c.kind == "date"):
        log.add(typed[col] < MIN_DATE, col, chunk[col], RuleCode.DATE_BEFORE_1900)
        if not spec.dates_beyond_cutoff:
            log.add(typed[col] > cut, col, chunk[col], RuleCode.DATE_AFTER_CUTOFF, cutoff.isoformat())
    context = RuleContext(typed, chunk, log)
    if not spec.is_root:
        _patient_link(context, facts, patient_keys)
    spec.rules(context)
    rejected = {
        row: reasons
        for row, reasons in log.by_row.items()
        if any(r.severity is Severity.BLOCKING for r in reasons)
    }
    findings = {row: reasons for row, reasons in log.by_row.items() if row not in rejected}
    bad_rows = pd.Index(sorted(rejected))
    valid = typed.drop(index=bad_rows)
    return ChunkResult(valid=valid, reasons=rejected, raw=chunk.loc[bad_rows], findings=findings)


def _patient_link(c: RuleContext, facts: PatientFacts, patient_keys: pd.Series | None) -> None:
    """A child row's patient must be a valid row of patients.csv (or, incremental, current in
    the registry); the patient's dates are aligned with the rows for the file's own rules."""
    if patient_keys is None:
        raise ValueError("the children of patients.csv are checked with their patient pseudonyms")
    pid = c.raw["patient_id"]
    known = patient_keys.isin(facts.frame.index)
    if facts.registry_patients is not None:
        in_registry = patient_keys.isin(facts.registry_patients)
    else:
        in_registry = pd.Series(False, index=pid.index)
    c.log.add(~known & ~in_registry & (pid != ""), "patient_id", pid, RuleCode.ORPHAN)
    f = facts.frame.reindex(patient_keys.to_numpy())
    f.index = c.t.index
    c.diagnosis, c.death, c.last_contact = f["diagnosis_date"], f["death_date"], f["last_contact_date"]
