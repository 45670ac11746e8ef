"""The registry's own bookkeeping: ETL runs, quarantine, source files, findings, the change
log, key fingerprints, derivation runs and data-quality runs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.db.models.base import KEY, PATIENT_KEY_DOC, Base, Id


class EtlRun(Base):
    """The run ledger: every run, refused ones included."""

    __tablename__ = "etl_runs"
    run_id: Mapped[int] = mapped_column(Id, primary_key=True)
    site_code: Mapped[str | None] = mapped_column(
        String(32),
        index=True,
        doc="the delivering site (null when the bundle was refused before its manifest was read)",
    )
    bundle_hash: Mapped[str | None] = mapped_column(
        String(64), index=True, doc="SHA-256 of the bundle as delivered"
    )
    exported_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), doc="when the site exported it (manifest)"
    )
    data_cutoff: Mapped[dt.date | None] = mapped_column(Date, doc="the bundle's data cutoff (manifest)")
    mode: Mapped[str | None] = mapped_column(
        String(16), doc="full (a complete export: records missing are retired) or incremental"
    )
    # running | succeeded | unchanged | refused | failed | interrupted | killed
    status: Mapped[str] = mapped_column(
        String(16), index=True, doc="running, succeeded, unchanged, refused, failed, interrupted or killed"
    )
    forced: Mapped[bool] = mapped_column(
        Boolean, default=False, doc="run with --force (an older or repeated bundle)"
    )
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), doc="when the run started (UTC)")
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), doc="when it ended")
    file_counts: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="per file: rows read, loaded, quarantined, findings, warnings, changed"
    )
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="seconds per stage")
    warnings: Mapped[list[Any] | None] = mapped_column(
        JSON, doc="the run's warnings, as shown to the operator"
    )
    message: Mapped[str | None] = mapped_column(Text, doc="why it was refused or failed")
    # drug names the vocabulary did not map: {normalised name: rows}, most frequent first
    unmapped_drugs: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="drug names the vocabulary did not map: {normalised name: rows}, most frequent first"
    )
    # columns the operator said a full export no longer has on purpose (``--column-gone``)
    columns_gone: Mapped[list[Any] | None] = mapped_column(
        JSON, doc="columns the operator said a full export no longer has on purpose (--column-gone)"
    )


class QuarantinedRow(Base):
    """A rejected input row with every reason found; source ids replaced by pseudonyms and
    direct-identifier columns removed."""

    __tablename__ = "quarantine"
    quarantine_id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        Id, ForeignKey("etl_runs.run_id"), index=True, doc="the run that rejected the row"
    )
    file: Mapped[str] = mapped_column(String(32), doc="the input file")
    row_number: Mapped[int] = mapped_column(Integer, doc="the row's number in the file")
    reasons: Mapped[list[Any]] = mapped_column(JSON, doc="every reason found: rule, column, message")
    row_data: Mapped[dict[str, Any]] = mapped_column(
        JSON, doc="the row with source ids replaced by pseudonyms and direct identifiers removed"
    )


class SourceFile(Base):
    """The last full delivery of each file per site: a file delivered again byte for byte (with
    the patient files it is checked against) is not read again."""

    __tablename__ = "source_files"
    site_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    file: Mapped[str] = mapped_column(String(32), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), doc="SHA-256 of the file as last delivered")
    rows: Mapped[int] = mapped_column(Integer, doc="its data rows")
    run_id: Mapped[int] = mapped_column(Id, doc="the run that read it")
    registry_version: Mapped[str] = mapped_column(
        String(32), doc="the registry version that read it (a new version reads every file again)"
    )
    # the header's contract columns, comma-separated (null: remembered before headers were)
    columns: Mapped[str | None] = mapped_column(Text, doc="its header, as delivered")


class InputFinding(Base):
    """An advisory finding on an input row that was loaded (the rule catalogue's ``advisory``
    severity): the row stays, the finding is kept for the site and for data-quality review."""

    __tablename__ = "input_findings"
    finding_id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(
        Id, ForeignKey("etl_runs.run_id"), index=True, doc="the run that found it"
    )
    file: Mapped[str] = mapped_column(String(32), doc="the input file")
    row_number: Mapped[int] = mapped_column(Integer, doc="the row's number in the file (1 = first data row)")
    record_key: Mapped[str] = mapped_column(KEY, doc="the loaded row's pseudonymous key")
    patient_key: Mapped[str | None] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    rule: Mapped[str] = mapped_column(String(48), doc="the advisory rule (docs/input-contract.md)")
    column: Mapped[str | None] = mapped_column(String(64), doc="the column it is about")
    value: Mapped[str | None] = mapped_column(Text, doc="the value, where it identifies nobody")
    message: Mapped[str] = mapped_column(Text, doc="what is odd about it")


class KeyFingerprint(Base):
    """The fingerprint of the pseudonym key the registry's pseudonyms were made with (an HMAC of
    a fixed label under the key, never the key), recorded by the first load (one row)."""

    __tablename__ = "key_fingerprints"
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), doc="when the key was first used"
    )
    run_id: Mapped[int | None] = mapped_column(Id, doc="the run that first used it")


class RecordChange(Base):
    """The change log: one row per loaded record a run added, changed, reinstated or retired
    (pseudonymous keys and column names only, never values), for ``registry patient history``;
    a site's first load writes one row a patient and file instead (action ``loaded``).
    Like lineage, ``run_id`` carries no foreign-key constraint (ledger rows are never deleted)."""

    __tablename__ = "record_changes"
    change_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Id, index=True, doc="the run that made the change")
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    file: Mapped[str] = mapped_column(String(32), doc="the input file of the record")
    record_key: Mapped[str] = mapped_column(KEY, doc="the record's pseudonymous key")
    # added | changed | reinstated | retired
    action: Mapped[str] = mapped_column(
        String(16),
        doc="added, changed, reinstated or retired; 'loaded' (a site's first load, one row a patient "
        "and file, record_key the patient's): every record of it the run added",
    )
    # for 'changed': the data columns whose value changed, comma-separated
    columns: Mapped[str | None] = mapped_column(
        Text, doc="for a change: the columns whose values changed (never the values)"
    )


class DerivationRun(Base):
    """A derivation run: when, which patients, the parameters and rules version it used."""

    __tablename__ = "derivation_runs"
    derivation_run_id: Mapped[int] = mapped_column(Id, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), doc="when the run started (UTC)")
    finished_at: Mapped[dt.datetime | None] = mapped_column(
        DateTime(timezone=True), doc="when it finished; null while running or if it failed"
    )
    scope: Mapped[str] = mapped_column(
        String(16), doc="all (every patient) or changed (the patients whose rows changed)"
    )
    parameters: Mapped[dict[str, Any]] = mapped_column(
        JSON, doc="the derivation parameters it used (docs/derivations.md)"
    )
    patients_derived: Mapped[int] = mapped_column(Integer, default=0, doc="patients it derived")
    # r<rules revision>-<vocabulary version>-<parameters digest>; null: before revision 2
    rules_version: Mapped[str | None] = mapped_column(
        String(48), doc="r<rules revision>-<vocabulary version>-<parameters digest>; null before revision 2"
    )


class DqRun(Base):
    """A run of the data-quality checks."""

    __tablename__ = "dq_runs"
    dq_run_id: Mapped[int] = mapped_column(Id, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), doc="when the checks started (UTC)"
    )
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), doc="when they finished")
    failed: Mapped[int] = mapped_column(Integer, default=0, doc="checks over their threshold")


class DqResult(Base):
    """One check's raw counts in one run (so thresholds can be re-applied without re-running)."""

    __tablename__ = "dq_results"
    dq_run_id: Mapped[int] = mapped_column(
        Id, ForeignKey("dq_runs.dq_run_id", ondelete="CASCADE"), primary_key=True
    )
    check_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(16), doc="conformance, completeness or plausibility")
    severity: Mapped[str] = mapped_column(String(16), doc="fatal, warning or info")
    threshold: Mapped[float] = mapped_column(Float, doc="the percentage of violating rows tolerated")
    violated: Mapped[int | None] = mapped_column(Integer, doc="violating rows")
    denominator: Mapped[int | None] = mapped_column(Integer, doc="rows the check applies to")
    status: Mapped[str] = mapped_column(String(16), doc="passed, failed or error")
    seconds: Mapped[float] = mapped_column(Float, doc="how long the check took")
    error: Mapped[str | None] = mapped_column(Text, doc="why the check could not run")


Index("ix_quarantine_run_file", QuarantinedRow.run_id, QuarantinedRow.file)
