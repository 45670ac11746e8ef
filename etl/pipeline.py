"""One ETL run: extract -> validate -> transform -> load, recorded in the run ledger.

The load is one transaction: a refused, failed, interrupted or killed run leaves the registry
exactly as it was (the ledger row, written in its own transactions, says what happened).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, delete, func, insert, select, text, update
from sqlalchemy.exc import OperationalError

from etl import load
from etl.bundle import DEFAULT_CHUNK_ROWS, Bundle, FileHeader, Manifest, read_manifest
from etl.extract import Chunk, RowHashing, iter_chunks, read_header
from etl.rules import RejectedRow, RuleCode, reason
from etl.specs import FILE_ORDER, READING_VERSION, ROOT, SPECS, RowContext
from etl.transform import Pseudonymiser, finding_rows, quarantine_row, row_hash_key, to_rows
from etl.validate import PatientFacts, check_chunk
from registry.core.config import fault_pause, worker_count
from registry.core.enums import RunStatus
from registry.core.errors import BundleRefused, Interrupted, Problem, RegistryError
from registry.core.parallel import forked_pool, in_order
from registry.db.bulk import refresh_statistics
from registry.db.database import (
    check_writer_lock,
    lock_work,
    lost_or_full,
    require_current_schema,
    writer_lock,
)
from registry.db.keyprint import check_key, remember_key
from registry.db.models import EtlRun, InputFinding, Patient, QuarantinedRow, Site, SourceFile
from registry.db.vocabulary import vocabulary_map

Progress = Callable[[str, int], None]  # (file name, rows done so far)
DEFAULT_MAX_QUARANTINE_RATE = 0.5  # a file losing more than this to the quarantine: refuse all
MIN_ROWS_FOR_RATE = 10  # ... when it has at least this many rows


@dataclass
class FileCounts:
    """Per-file counts of a run: read = loaded + quarantined."""

    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    warnings: int = 0
    changed: int = 0
    retired: int = 0
    findings: int = 0  # advisory findings on loaded rows
    unchanged_file: bool = False  # identical to the site's last full delivery: not read
    unchanged_rows: int = 0  # rows identical to a current record's source row: counted, not read again
    lines: int | None = None  # physical lines after the header (a quoted value may span lines)


@dataclass
class RunSummary:
    """What a run did, as the CLI and the ledger report it."""

    status: RunStatus
    run_id: int | None = None
    site_id: str | None = None
    mode: str | None = None
    data_cutoff: dt.date | None = None
    bundle_hash: str | None = None
    files: dict[str, FileCounts] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unmapped_drugs: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    message: str = ""
    quarantine: list[RejectedRow] = field(default_factory=list)  # filled by dry runs
    derived_patients: int | None = None
    derived_written: int | None = None  # ... of which the derived rows changed
    columns_gone: list[str] = field(default_factory=list)  # said gone on purpose (--column-gone)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "run_id": self.run_id,
            "site_id": self.site_id,
            "mode": self.mode,
            "data_cutoff": self.data_cutoff.isoformat() if self.data_cutoff else None,
            "bundle_hash": self.bundle_hash,
            "files": {k: asdict(v) for k, v in self.files.items()},
            "quarantined": self.quarantined,
            "warnings": self.warnings,
            "unmapped_drugs": self.unmapped_drugs,
            "derived_patients": self.derived_patients,
            "derived_written": self.derived_written,
            "timings": self.timings,
            "message": self.message,
        }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _Ledger:
    """Writes the ledger row in its own short transactions (never inside the load's)."""

    def __init__(self, engine: Engine, enabled: bool) -> None:
        self.engine = engine
        self.enabled = enabled
        self.run_id: int | None = None

    def start(self, bundle_hash: str | None, forced: bool) -> None:
        if not self.enabled:
            return
        with self.engine.begin() as conn:
            # we hold the writer lock: any run still marked running was killed
            conn.execute(
                update(EtlRun)
                .where(EtlRun.status == RunStatus.RUNNING)
                .values(status=RunStatus.KILLED, message="the process ended without finishing")
            )
            res = conn.execute(
                insert(EtlRun).values(
                    status=RunStatus.RUNNING, started_at=_now(), bundle_hash=bundle_hash, forced=forced
                )
            )
            pk = res.inserted_primary_key
            assert pk is not None
            self.run_id = int(pk[0])

    def finish(self, summary: RunSummary, manifest: Manifest | None, conn: Any = None) -> None:
        """The run's final status: in ``conn`` (the load's own transaction, so the status commits
        with the data or not at all), else in a short transaction of its own."""
        summary.run_id = self.run_id
        if not self.enabled or self.run_id is None:
            return
        values: dict[str, Any] = {
            "status": summary.status,
            "finished_at": _now(),
            "file_counts": {k: asdict(v) for k, v in summary.files.items()},
            "timings": summary.timings,
            "warnings": summary.warnings[:200],
            "message": summary.message[:4000],
            "unmapped_drugs": summary.unmapped_drugs or None,
            "columns_gone": summary.columns_gone or None,
        }
        if manifest is not None:
            values.update(
                site_code=manifest.site_id,
                exported_at=manifest.exported_at,
                data_cutoff=manifest.data_cutoff,
                mode=manifest.mode,
            )
        if conn is not None:
            conn.execute(update(EtlRun).where(EtlRun.run_id == self.run_id).values(**values))
            return
        with self.engine.begin() as own:
            own.execute(update(EtlRun).where(EtlRun.run_id == self.run_id).values(**values))


def run_bundle(
    engine: Engine,
    path: str | Path,
    key: bytes,
    *,
    force: bool = False,
    dry_run: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Progress | None = None,
    derive: bool = True,
    max_quarantine_rate: float | None = DEFAULT_MAX_QUARANTINE_RATE,
    row_by_row: bool = True,
    columns_gone: frozenset[str] = frozenset(),
) -> RunSummary:
    """Load (or, with ``dry_run``, only validate) one export bundle, then derive the patients
    whose rows changed.

    Everything is written in one transaction under the writer lock: a refusal, an error or a
    killed process leaves the registry as it was; every run is recorded in the ledger.

    Parameters
    ----------
    engine
        The registry (migrated).
    path
        The bundle: a folder or a ``.zip`` with ``manifest.json`` and the input files.
    key
        The deployment's pseudonym key.
    force
        Load a bundle older than the site's last one, or one already loaded.
    dry_run
        Run every check, write nothing (the rejected rows are in the summary).
    chunk_rows
        Rows read per chunk (memory is one chunk plus per-patient facts).
    progress
        Called with (file or stage, rows done) while reading and deriving.
    derive
        Derive the changed patients after the load.
    max_quarantine_rate
        Refuse the whole bundle when a file (of at least 10 rows) would lose a larger share of
        its rows to the quarantine (None: never). A dry run reports it as a warning.
    columns_gone
        ``file.column`` names a full export may lack although the site delivered them before
        (said on purpose by the operator, recorded in the run); any other such column refuses
        the bundle (65) instead of blanking it for every patient.
    row_by_row
        In a full export, recognise the rows of the transplant, treatment and event files that
        are identical to a current record's source row and skip them (False: read every row;
        the result is the same, only slower — for tests and benchmarks).

    Returns
    -------
    RunSummary
        Status, per-file counts (read = loaded + quarantined), warnings, unmapped drug
        names, timings.

    Raises
    ------
    BundleRefused
        For a structural problem (exit 65), after recording it in the ledger.
    """
    t0 = time.perf_counter()
    try:
        with Bundle(path) as bundle:
            require_current_schema(engine)
            lock = writer_lock(engine) if not dry_run else contextlib.nullcontext()
            with lock:
                with engine.connect() as conn:
                    check_key(conn, key)  # another key would re-pseudonymise and retire everything
                bundle_hash = bundle.sha256()  # one pass over the bundle's bytes
                ledger = _Ledger(engine, enabled=not dry_run)
                ledger.start(bundle_hash, force)
                summary = RunSummary(status=RunStatus.RUNNING)
                extra = bundle.unexpected_members()
                if extra:  # counted, not named: a file name can identify a patient
                    summary.warnings.append(
                        f"{extra} unexpected file(s) in the bundle ignored "
                        "(only manifest.json and the input files are read)"
                    )
                manifest: Manifest | None = None
                try:
                    manifest = read_manifest(bundle)
                    headers = {name: read_header(bundle, spec) for name, spec in SPECS.items()}
                    summary.site_id, summary.mode = manifest.site_id, manifest.mode
                    summary.data_cutoff = manifest.data_cutoff
                    summary.bundle_hash = bundle_hash
                    _check_columns(engine, manifest, headers, columns_gone)
                    summary.columns_gone = sorted(columns_gone)
                    done = None if dry_run else _check_order(engine, manifest, bundle_hash, force)
                    if done is not None:
                        summary.status = RunStatus.UNCHANGED
                        summary.message = done
                        ledger.finish(summary, manifest)
                        raise _AlreadyLoaded  # leaves the lock; the derivation below takes it again
                    # what was read under a later cutoff may not hold under this one: read it all
                    same_reading = not dry_run and not force and _cutoff_not_earlier(engine, manifest)
                    unchanged = _unchanged_files(engine, bundle, manifest, headers) if same_reading else set()

                    def before_commit(conn: Connection) -> None:
                        check_writer_lock(conn)
                        summary.status = RunStatus.SUCCEEDED
                        summary.timings["load_s"] = round(time.perf_counter() - t0, 3)
                        summary.message = _describe(summary)
                        ledger.finish(summary, manifest, conn)

                    _load(
                        engine,
                        bundle,
                        manifest,
                        headers,
                        key,
                        summary,
                        ledger.run_id or 0,
                        dry_run=dry_run,
                        force=force,
                        chunk_rows=chunk_rows,
                        progress=progress,
                        max_quarantine_rate=max_quarantine_rate,
                        unchanged=unchanged,
                        row_by_row=row_by_row and same_reading,
                        before_commit=before_commit,
                    )
                    summary.status = RunStatus.VALIDATED if dry_run else RunStatus.SUCCEEDED
                except _AlreadyLoaded:
                    raise
                except BundleRefused as exc:
                    summary.status = RunStatus.REFUSED
                    summary.message = exc.message
                    summary.timings["total_s"] = round(time.perf_counter() - t0, 3)
                    ledger.finish(summary, manifest)
                    raise
                except KeyboardInterrupt:
                    summary.status = RunStatus.INTERRUPTED
                    summary.message = "interrupted (Ctrl-C) during the load; nothing of the run was committed"
                    summary.timings["total_s"] = round(time.perf_counter() - t0, 3)
                    ledger.finish(summary, manifest)
                    raise Interrupted(
                        f"interrupted; nothing was changed (run {ledger.run_id} recorded as interrupted)"
                    ) from None
                except BaseException as exc:
                    summary.status = RunStatus.FAILED
                    summary.message = (
                        exc.message if isinstance(exc, RegistryError) else f"{type(exc).__name__}"
                    )
                    summary.timings["total_s"] = round(time.perf_counter() - t0, 3)
                    ledger.finish(summary, manifest)
                    raise
                if dry_run:  # a load's final status was written in its own transaction
                    summary.timings["load_s"] = round(time.perf_counter() - t0, 3)
                    summary.message = _describe(summary)
    except _AlreadyLoaded:
        if derive:  # finish what a run killed during its derivation left flagged
            _derive_pending(engine, summary, progress, pause=False)
        return summary
    if derive and not dry_run:
        committed = f"run {ledger.run_id}'s load was committed, its derivation was not"
        try:
            _derive_pending(engine, summary, progress)
        except Interrupted:
            raise Interrupted(
                f"interrupted during the derivation: {committed}",
                hint="`registry derive` derives the patients it flagged (so does the next run)",
            ) from None
        except OperationalError as exc:  # the server lost, the disk full: after the load committed
            known = lost_or_full(exc, committed + " (`registry derive` finishes it)")
            if known is None:
                raise
            raise known from None
    summary.timings["total_s"] = round(time.perf_counter() - t0, 3)
    if not dry_run and ledger.run_id is not None:
        with engine.begin() as conn:
            conn.execute(update(EtlRun).where(EtlRun.run_id == ledger.run_id).values(timings=summary.timings))
    return summary


class _AlreadyLoaded(Exception):
    """Internal: the bundle was loaded before; leave the lock, then finish a pending derivation."""


def _derive_pending(
    engine: Engine, summary: RunSummary, progress: Progress | None, *, pause: bool = True
) -> None:
    """Derive the patients the load flagged (and any a killed run left flagged)."""
    from registry.derive.run import derive_pending

    if pause:
        _fault_point("derive")  # the load committed, its patients flagged, nothing derived yet
    t1 = time.perf_counter()
    derive_progress = (lambda done, _total: progress("derivation", done)) if progress else None
    result = derive_pending(engine, progress=derive_progress)
    summary.derived_patients, summary.derived_written = result.patients, result.written
    summary.timings["derive_s"] = round(time.perf_counter() - t1, 3)
    _warn_stale_derivations(engine, summary)


def _warn_stale_derivations(engine: Engine, summary: RunSummary) -> None:
    """Patients derived under older rules are never mixed in silently: the run says so."""
    from registry.derive.run import derivation_status

    with engine.connect() as conn:
        message = derivation_status(conn).message
    if message:
        summary.warnings.append(message)


def _unchanged_files(
    engine: Engine, bundle: Bundle, manifest: Manifest, headers: dict[str, FileHeader]
) -> set[str]:
    """Files of a full bundle identical, byte for byte, to the site's last full delivery read
    under the same reading version (registry, specs, rules, vocabulary). The files the others
    are checked against (patients, follow-up) count as unchanged only together, and, when
    another file changed, only if their last reading quarantined none of their rows: then the
    site's current patients are exactly their valid rows, and the changed files are checked
    against the registry's facts instead (``load.patient_facts``)."""
    if manifest.mode != "full":
        return set()
    with engine.connect() as conn:
        stored = {
            r.file: r
            for r in conn.execute(select(SourceFile).where(SourceFile.site_code == manifest.site_id))
        }
    same = {
        name
        for name, spec in SPECS.items()
        if headers[name].present
        and name in stored
        and stored[name].sha256 == bundle.member_hashes.get(spec.filename)
        and stored[name].registry_version == READING_VERSION
    }
    facts = set(_FACTS_FILES)
    # (an optional file the bundle does not have is not a changed one)
    if any(name not in same for name in SPECS if headers[name].present) and not (
        facts <= same and _read_cleanly(engine, [stored[n].run_id for n in facts], facts)
    ):
        same -= facts  # the changed files are checked against the patients' facts: read them
    return same


def _read_cleanly(engine: Engine, run_ids: list[int], files: set[str]) -> bool:
    """Whether the runs that last read ``files`` quarantined none of their rows."""
    with engine.connect() as conn:
        found = conn.execute(
            select(QuarantinedRow.quarantine_id)
            .where(QuarantinedRow.run_id.in_(run_ids), QuarantinedRow.file.in_(sorted(files)))
            .limit(1)
        ).first()
    return found is None


def _contract_columns(name: str) -> set[str]:
    return {c.name for c in SPECS[name].columns}


def _check_columns(
    engine: Engine, manifest: Manifest, headers: dict[str, FileHeader], gone: frozenset[str]
) -> None:
    """A full export whose file lacks a column of the contract that the site's last full
    delivery of that file had would blank it for every patient: refused (65), naming the
    columns, unless the operator says they are gone on purpose (``file.column`` in ``gone``)."""
    if manifest.mode != "full":
        return
    with engine.connect() as conn:
        before = {
            r.file: set(r.columns.split(",")) if r.columns else set()
            for r in conn.execute(select(SourceFile).where(SourceFile.site_code == manifest.site_id))
        }
    lost = [
        (name, col)
        for name, header in headers.items()
        if header.present
        for col in sorted(before.get(name, set()) - set(header.columns))
        if f"{name}.{col}" not in gone
    ]
    if lost:
        problems = [
            Problem(SPECS[name].filename, f"column {col} was delivered before and is missing now")
            for name, col in lost
        ]
        flags = " ".join(f"--column-gone {name}.{col}" for name, col in lost)
        raise BundleRefused(
            problems,
            hint=f"a full export without it would blank it for every patient; if the site dropped it on "
            f"purpose: {flags}",
        )


def _remember_files(
    conn: Any,
    bundle: Bundle,
    manifest: Manifest,
    summary: RunSummary,
    run_id: int,
    unchanged: set[str],
    headers: dict[str, FileHeader],
) -> None:
    """A full delivery's files become the site's reference for the next night; an incremental
    one changes the registry behind them, so the site's references are dropped."""
    conn.execute(
        delete(SourceFile).where(SourceFile.site_code == manifest.site_id, SourceFile.file.not_in(unchanged))
    )
    if manifest.mode != "full":
        conn.execute(delete(SourceFile).where(SourceFile.site_code == manifest.site_id))
        return
    rows = [
        {
            "site_code": manifest.site_id,
            "file": name,
            "sha256": bundle.member_hashes[spec.filename],
            "rows": summary.files[name].read,
            "run_id": run_id,
            "registry_version": READING_VERSION,
            "columns": ",".join(c for c in headers[name].columns if c in _contract_columns(name)),
        }
        for name, spec in SPECS.items()
        if name not in unchanged and spec.filename in bundle.member_hashes
    ]
    if rows:
        conn.execute(insert(SourceFile), rows)


def _describe(s: RunSummary) -> str:
    changed = sum(f.changed for f in s.files.values())
    retired = sum(f.retired for f in s.files.values())
    if s.status == RunStatus.VALIDATED:
        return f"validation only: {s.quarantined} row(s) would be quarantined; nothing written"
    same = [f"{name}.csv" for name, f in s.files.items() if f.unchanged_file]
    note = f"; {', '.join(same)} unchanged since the last load, not read again" if same else ""
    if changed == 0 and retired == 0:
        return f"loaded; no record changed ({s.quarantined} row(s) quarantined){note}"
    return f"loaded; {changed} record(s) new or changed, {retired} retired, {s.quarantined} quarantined{note}"


def _check_order(
    engine: Engine, manifest: Manifest, bundle_hash: str, force: bool, work: Connection | None = None
) -> str | None:
    """Refuse a bundle older than the site's last one; report an identical re-delivery (in
    ``work``, the load's transaction, when given)."""
    with contextlib.nullcontext(work) if work is not None else engine.connect() as conn:
        same = conn.execute(
            select(EtlRun.run_id)
            .where(EtlRun.bundle_hash == bundle_hash, EtlRun.site_code == manifest.site_id)
            .where(EtlRun.status == RunStatus.SUCCEEDED)
            .order_by(EtlRun.run_id.desc())
            .limit(1)
        ).scalar()
        last = conn.execute(select(Site.last_exported_at).where(Site.site_code == manifest.site_id)).scalar()
    if same is not None and not force:
        return f"this bundle was already loaded by run {same}; nothing changed"
    if last is not None:
        if last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        if manifest.exported_at < last and not force:
            raise BundleRefused(
                [
                    Problem(
                        "manifest.json",
                        f"exported_at {manifest.exported_at.isoformat()} is older than the "
                        f"last bundle loaded for site {manifest.site_id} ({last.isoformat()})",
                    )
                ],
                hint="rerun with --force to load it anyway",
            )
    return None


def _joined_lines(quarantine: list[RejectedRow], bundle: Bundle, summary: RunSummary) -> set[str]:
    """Files in which a quoted value spanned lines and the record was quarantined for it (a stray
    quote): the run reports records read against physical lines, and says the file retires
    nothing tonight. Returns those files."""
    for name, counts in summary.files.items():  # records read against physical lines, every file
        counts.lines = bundle.member_lines.get(SPECS[name].filename)
    joined: dict[str, list[int]] = {}
    for q in quarantine:
        if any(r.rule == RuleCode.STRAY_QUOTE for r in q.reasons):
            joined.setdefault(q.file, []).append(q.row_number)
    for name, rows in sorted(joined.items()):
        counts = summary.files[name]
        summary.warnings.append(
            f"{SPECS[name].filename}: {counts.lines} physical lines read as {counts.read} records: a quoted "
            f"value spans lines (a stray quote?) in {len(rows)} record(s), quarantined (first at line "
            f"{rows[0]}); this file retires no record tonight"
        )
    return set(joined)


def _load(
    engine: Engine,
    bundle: Bundle,
    manifest: Manifest,
    headers: dict[str, FileHeader],
    key: bytes,
    summary: RunSummary,
    run_id: int,
    *,
    dry_run: bool,
    force: bool,
    chunk_rows: int,
    progress: Progress | None,
    max_quarantine_rate: float | None,
    unchanged: set[str],
    row_by_row: bool,  # skipping unchanged rows allowed (not a dry run, not forced, cutoff not earlier)
    before_commit: Callable[[Connection], None] = lambda conn: None,
) -> None:
    pseudo = Pseudonymiser(key, manifest.site_id)
    unmapped: Counter[str] = Counter()
    quarantine: list[RejectedRow] = []
    findings: list[dict[str, Any]] = []
    facts = PatientFacts()
    for name, h in headers.items():
        counts = summary.files.setdefault(name, FileCounts())
        if len(h.ignored) > 5:  # one line, not thousands
            counts.warnings += 1
            shown = ", ".join(repr(c) for c in h.ignored[:5])
            summary.warnings.append(f"{name}.csv: {len(h.ignored)} unknown columns ignored ({shown}, ...)")
        else:
            for col in h.ignored:
                counts.warnings += 1
                summary.warnings.append(f"{name}.csv: unknown column {col!r} ignored")
        for col in h.identifiers_dropped:
            counts.warnings += 1
            summary.warnings.append(
                f"{name}.csv: column {col!r} looks like a direct identifier; dropped, not stored"
            )

    conn = engine.connect()
    trans = conn.begin()
    if not dry_run:
        lock_work(conn)  # first: another run's work (past a lost lock) ends before this one's begins
    try:
        with engine.connect() as ro:
            vocab = vocabulary_map(ro)
            if manifest.mode == "incremental":
                facts.registry_patients = {
                    k
                    for (k,) in ro.execute(
                        select(Patient.patient_key).where(
                            Patient.site_code == manifest.site_id, Patient.is_current
                        )
                    )
                }
        load.create_stages(conn)
        row_context = RowContext(pseudo, vocab, manifest.site_id, unmapped)
        reader = _Reader(
            pseudo,
            key,
            row_context,
            facts,
            manifest.data_cutoff,
            run_id,
            chunk_rows,
            progress,
            copy_csv=conn.dialect.name == "postgresql",
        )
        if set(_FACTS_FILES) <= unchanged and not set(SPECS) <= unchanged:
            # the patient files, sent again unchanged and read cleanly last time, are the
            # site's current records: the changed files are checked against those
            facts.frame = load.patient_facts(conn, manifest.site_id)
        # files compared row by row with the site's current records (None until planned)
        rowwise: dict[str, _RowPlan | None] = (
            dict.fromkeys(_LEAF_FILES) if row_by_row and manifest.mode == "full" else {}
        )
        for spec in SPECS.values():
            name = spec.name
            t = time.perf_counter()
            counts = summary.files[name]
            if name in unchanged:  # byte for byte the site's last full delivery: not read again
                counts.unchanged_file = True
                continue
            if not headers[name].present:  # an optional file the bundle does not have
                continue
            unmapped_before = sum(unmapped.values())
            unmapped_snapshot = Counter(unmapped)
            plan = rowwise.get(name)
            if plan is None and name in rowwise:  # a leaf file of a full export: compare row by row
                plan = rowwise[name] = _RowPlan.make(conn, name, manifest.site_id)
            reading = _read_file(conn, bundle, spec, headers[name], reader, counts, plan)
            if plan is not None and reading.conflicts(conn, name, spec.id_column):
                # a row sent unchanged shares its id with another row (a new duplicate): read
                # the whole file again, so the duplicate rule sees every row
                load.clear_stage(conn, name)
                unmapped.clear()
                unmapped.update(unmapped_snapshot)
                counts.read = counts.unchanged_rows = 0
                plan = rowwise[name] = None
                reading = _read_file(conn, bundle, spec, headers[name], reader, counts, None)
            file_q, file_findings = reading.rejected, reading.findings
            load.index_stage(conn, name)
            dup_keys = _quarantine_duplicates(conn, name, spec.id_column, file_q)
            if spec.on_done is not None:
                spec.on_done(facts, dup_keys)
            counts.quarantined = len(file_q)
            quarantine.extend(file_q)
            file_findings = [f for f in file_findings if f["record_key"] not in dup_keys]
            counts.findings = len(file_findings)
            findings.extend(file_findings)
            counts.warnings += sum(unmapped.values()) - unmapped_before
            summary.timings[f"{name}_s"] = round(time.perf_counter() - t, 3)
            if name == _LAST_FACTS_FILE and manifest.mode == "full" and (rowwise or unchanged):
                dirty = load.mark_dirty_patients(conn, manifest.site_id, _FACTS_FILES)
                if dirty:  # a file sent unchanged must still be checked against those patients
                    unchanged -= set(_LEAF_FILES)

        for stage in LOAD_STAGES:
            summary.timings[f"{stage}_s"] = round(reader.seconds[stage], 3)
        t = time.perf_counter()
        for name in FILE_ORDER:
            staged = conn.execute(text(f"SELECT COUNT(*) FROM {load.stage_name(name)}")).scalar()
            counts = summary.files[name]
            counts.loaded = int(staged or 0) + counts.unchanged_rows
            if counts.read != counts.loaded + counts.quarantined:  # pragma: no cover - invariant
                raise RuntimeError(f"row accounting broken for {name}")
        summary.unmapped_drugs = dict(unmapped.most_common())
        for drug, n in unmapped.most_common(20):
            summary.warnings.append(f"treatments.csv: drug {drug!r} not in the vocabulary ({n} rows)")
        mostly_rejected = _mostly_rejected(summary, quarantine, max_quarantine_rate)
        if mostly_rejected and dry_run:
            summary.warnings += [str(p) + ": a load would be refused" for p in mostly_rejected]
        elif mostly_rejected:
            raise BundleRefused(
                mostly_rejected,
                hint="the export itself is probably broken (a date format, a column mix-up): fix it and "
                "deliver again; `registry etl validate` shows every row's reasons; "
                "--max-quarantine-rate changes the threshold",
            )
        if dry_run:
            summary.quarantine = quarantine
            _drop_absent(summary, headers)
            trans.rollback()
            return
        root = summary.files[ROOT]
        if manifest.mode == "full" and root.read == 0 and not root.unchanged_file and not force:
            has_current = conn.execute(
                select(Patient.patient_key)
                .where(Patient.site_code == manifest.site_id, Patient.is_current)
                .limit(1)
            ).first()
            if has_current is not None:
                raise BundleRefused(
                    [
                        Problem(
                            SPECS[ROOT].filename, "a full bundle without patients would retire the whole site"
                        )
                    ],
                    hint="check the export; rerun with --force if the site really has no patients",
                )
        # checked again in the work transaction: a run that committed while this one read
        if _check_order(engine, manifest, summary.bundle_hash or "", force, conn) is not None:
            raise BundleRefused([Problem("manifest.json", "another run loaded this bundle meanwhile")])
        _upsert_site(conn, manifest, run_id)
        remember_key(conn, key, run_id)
        for name in FILE_ORDER:
            # the change log (which flags the changed records' patients), then the upsert
            logged = summary.files[name].changed = load.log_changes(conn, name, run_id)
            load.merge(conn, name, only_new=load.only_added(conn, name, run_id, logged))
        _fault_point("merge")
        joined = _joined_lines(quarantine, bundle, summary)
        if manifest.mode == "full":
            for name in reversed(FILE_ORDER):
                # an optional file left out, or an unchanged one not read again, retires nothing;
                # nor does one in which a stray quote joined lines: the records it swallowed
                # cannot be told from records no longer sent
                if headers[name].present and name not in unchanged and name not in joined:
                    plan = rowwise.get(name)
                    if plan is not None:
                        load.stage_gone(conn, name, plan.gone())
                    summary.files[name].retired = load.retire_missing(
                        conn, name, manifest.site_id, run_id, gone_only=plan is not None
                    )
        _fault_point("retire")
        refresh_statistics(
            conn,
            {
                load.TARGETS[n][0]: c.changed + c.retired
                for n, c in summary.files.items()
                if n in load.TARGETS
            },
        )
        _remember_files(conn, bundle, manifest, summary, run_id, unchanged, headers)
        if quarantine:
            conn.execute(insert(QuarantinedRow), [{**q.to_json(), "run_id": run_id} for q in quarantine])
        _fault_point("quarantine")
        if findings:
            conn.execute(insert(InputFinding), [{**f, "run_id": run_id} for f in findings])
        load.drop_stages(conn)
        summary.timings["merge_s"] = round(time.perf_counter() - t, 3)
        _fault_point("commit")
        _drop_absent(summary, headers)
        before_commit(conn)  # the lock still held; the ledger's final status, in this transaction
        trans.commit()
    except BaseException:
        if trans.is_active:
            trans.rollback()
        raise
    finally:
        conn.close()


_FACTS_FILES = tuple(name for name, spec in SPECS.items() if spec.on_valid is not None)
_LAST_FACTS_FILE = _FACTS_FILES[-1]
# the files no other file is checked against: their unchanged rows need not be read again
_LEAF_FILES = tuple(name for name in FILE_ORDER if name not in _FACTS_FILES)


def _drop_absent(summary: RunSummary, headers: dict[str, FileHeader]) -> None:
    """An optional file the bundle does not have is not part of the run's summary (a bundle
    without it reads, loads and reports exactly as before it existed)."""
    for name, h in headers.items():
        if not h.present:
            summary.files.pop(name, None)


def _cutoff_not_earlier(engine: Engine, manifest: Manifest) -> bool:
    """A full export may skip its unchanged files and rows (when loaded normally: not a dry
    run, not forced) if its data cutoff is not earlier than any the site's loads used (a row
    accepted under a later cutoff might be refused under this one)."""
    with engine.connect() as conn:
        latest = conn.execute(
            select(func.max(EtlRun.data_cutoff)).where(
                EtlRun.site_code == manifest.site_id, EtlRun.status == RunStatus.SUCCEEDED
            )
        ).scalar()
    return latest is None or _as_date(latest) <= manifest.data_cutoff


def _as_date(v: Any) -> dt.date:
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)[:10])


@dataclass
class _RowPlan:
    """A leaf file compared row by row with the site's current records: a row whose keyed hash
    is a stored record's (of a patient whose own rows did not change) is counted as read and
    loaded and not read again; the rest is validated, staged and merged as usual."""

    stored: np.ndarray  # hashes of the site's current records of the file
    eligible: pd.Index  # those an unchanged row may match
    seen: np.ndarray  # per eligible hash: matched tonight
    repeated: bool = False  # a hash matched twice (a row sent twice)
    count: int = 0  # hashes matched so far

    @classmethod
    def make(cls, conn: Any, name: str, site: str) -> _RowPlan | None:
        found = load.stored_hashes(conn, name, site)
        if found is None or len(found[1]) == 0:
            return None
        stored, eligible = found
        return cls(stored, pd.Index(eligible), np.zeros(len(eligible), dtype=bool))

    def match(self, hashes: np.ndarray) -> np.ndarray:
        """Which of a chunk's rows are unchanged (a boolean mask)."""
        pos = self.eligible.get_indexer(hashes)
        hit = pos >= 0
        taken = pos[hit]
        self.seen[taken] = True
        count = int(np.count_nonzero(self.seen))
        if count != self.count + len(taken):  # a hash matched twice, in this chunk or before
            self.repeated = True
        self.count = count
        return hit

    def matched(self) -> np.ndarray:
        return self.eligible.to_numpy()[self.seen]

    def gone(self) -> np.ndarray:
        """Stored hashes not sent unchanged tonight: records changed, no longer sent, or of a
        patient whose own rows changed (those are read again and stay if still sent)."""
        return self.stored[~pd.Index(self.stored).isin(self.matched())]


@dataclass
class _Reader:
    """What reading any file of a bundle needs."""

    pseudo: Pseudonymiser
    key: bytes  # the pseudonym key (row hashes are keyed by it)
    context: RowContext
    facts: PatientFacts
    cutoff: dt.date
    run_id: int
    chunk_rows: int
    progress: Progress | None
    # seconds of the load's stages over every file (with checking workers, their stages are
    # summed over the workers and overlap the reading and staging done here)
    seconds: collections.defaultdict[str, float] = field(
        default_factory=lambda: collections.defaultdict(float)
    )
    # PostgreSQL: chunks are staged as CSV blocks written from their columns (``COPY``)
    copy_csv: bool = False


@dataclass
class _FileReading:
    rejected: list[RejectedRow]
    findings: list[dict[str, Any]]
    plan: _RowPlan | None

    def conflicts(self, conn: Any, name: str, id_column: str) -> bool:
        """A row matched as unchanged whose record key another row of tonight also uses (staged
        or quarantined), or a row sent twice: the file must be read in full."""
        assert self.plan is not None
        if self.plan.repeated:
            return True
        q_keys = [str(k) for q in self.rejected if (k := q.row_data.get(id_column))]
        used = load.staged_record_hashes(conn, name, q_keys)
        return bool(pd.Index(used).isin(self.plan.matched()).any())


# the stages of reading the files, timed over all of them (``RunSummary.timings``: ``<stage>_s``)
LOAD_STAGES = ("read", "validate", "pseudonymise", "map", "stage")

# files at least this large (bytes) are checked by worker processes while this one reads and
# stages (a file whose valid rows feed the patient facts is always checked here)
PARALLEL_CHECK_BYTES = 32 << 20


@dataclass
class _Checked:
    """One chunk checked and mapped: the target rows to stage (tuples, or on PostgreSQL a CSV
    block), the rejected rows as stored, the findings on loaded rows and the drug names the
    vocabulary did not know."""

    staged: list[tuple[Any, ...]] | bytes  # tuples, or a CSV block for PostgreSQL's COPY
    rejected: list[RejectedRow]
    findings: list[dict[str, Any]]
    unmapped: Counter[str]
    # for the file's ``on_valid`` (such a file is checked here only): the valid typed rows and
    # the target rows' patient keys
    valid: pd.DataFrame | None = None
    patient_keys: pd.Series | None = None
    # seconds by stage: splitting lines (read), validate, pseudonymise, map (to target rows,
    # rejected rows and findings), stage (the tuples or the CSV block)
    seconds: dict[str, float] = field(default_factory=dict)


def _check_piece(spec: Any, r: _Reader, piece: Chunk) -> _Checked:
    """Validate one chunk and map its valid rows to target rows (no database: a worker process
    can do it, splitting the chunk's lines into fields too)."""
    pseudo = r.pseudo
    t0, p0 = time.perf_counter(), pseudo.seconds
    frame, hashes = piece.frame, piece.hashes
    assert hashes is not None
    t1 = time.perf_counter()
    context = dataclasses.replace(r.context, unmapped=Counter())
    pkeys = None if spec.is_root else pseudo.series("patient", frame["patient_id"])
    res = check_chunk(spec, frame, r.cutoff, r.facts, pkeys)
    t2, p2 = time.perf_counter(), pseudo.seconds
    rows = to_rows(spec, res.valid, context, r.run_id)
    rows["row_hash"] = pd.Series(hashes, index=frame.index).loc[rows.index].to_numpy()
    rejected = [
        quarantine_row(spec, row_number, res.raw.loc[row_number].to_dict(), reasons, pseudo)
        for row_number, reasons in res.reasons.items()
    ]
    findings = finding_rows(spec, res.findings, rows, pseudo)
    t3, p3 = time.perf_counter(), pseudo.seconds
    staged = load.staged_csv(spec.name, rows) if r.copy_csv else load.staged_tuples(spec.name, rows)
    seconds = {
        "read": t1 - t0,
        "validate": (t2 - t1) - (p2 - p0),
        "pseudonymise": p3 - p0,
        "map": (t3 - t2) - (p3 - p2),
        "stage": time.perf_counter() - t3,
    }
    if spec.on_valid is None:
        return _Checked(staged, rejected, findings, context.unmapped, seconds=seconds)
    return _Checked(staged, rejected, findings, context.unmapped, res.valid, rows["patient_key"], seconds)


_CHECKER: dict[str, Any] = {}  # what a checking worker inherits from its parent (by fork)


def _check_in_worker(piece: Chunk) -> _Checked:
    return _check_piece(_CHECKER["spec"], _CHECKER["reader"], piece)


def _load_workers() -> int:
    """Worker processes for checking a large file: REGISTRY_LOAD_WORKERS, else the cores."""
    return worker_count("load")


def _checked_pieces(
    pieces: Iterator[Chunk], spec: Any, r: _Reader, parallel: bool
) -> Iterator[tuple[Chunk, _Checked]]:
    """Each chunk with its check, in file order: done here, or (``parallel``) by worker
    processes forked now (they inherit the facts, the pseudonymiser and the vocabulary) while
    this process reads the next chunks and stages the checked ones; at most two chunks a
    worker wait, so memory stays bounded by the chunk size."""
    workers = _load_workers() if parallel else 1
    if workers <= 1:
        for piece in pieces:
            yield piece, _check_piece(spec, r, piece)
        return
    _CHECKER.update(spec=spec, reader=r)
    try:
        with forked_pool(workers) as pool:
            # the chunk travels as its lines: the worker splits them into fields
            yield from in_order(pool, _check_in_worker, pieces, lambda piece: piece, 2 * workers)
    finally:
        _CHECKER.clear()


def _read_file(
    conn: Any,
    bundle: Bundle,
    spec: Any,
    header: FileHeader,
    r: _Reader,
    counts: FileCounts,
    plan: _RowPlan | None,
) -> _FileReading:
    """Read, validate and stage one file chunk by chunk (rows matched as unchanged by ``plan``
    are counted and skipped). Returns its rejected rows and advisory findings."""
    name = spec.name
    file_q: list[RejectedRow] = []
    file_findings: list[dict[str, Any]] = []
    hashing = RowHashing(
        row_hash_key(r.key, READING_VERSION, name, header.columns), plan.match if plan is not None else None
    )
    skipped_before = plan.count if plan is not None else 0
    size = bundle.size(spec.filename) or 0
    parallel = spec.on_valid is None and size >= PARALLEL_CHECK_BYTES
    pieces = iter_chunks(bundle, spec, header, r.chunk_rows, hashing)
    for piece, checked in _checked_pieces(_counted(pieces, counts, r.seconds), spec, r, parallel):
        _fault_point("validate")  # the first chunk validated, not staged
        for stage, spent in checked.seconds.items():
            r.seconds[stage] += spent
        for row_number, fields in piece.malformed:
            why = f"{fields} fields, the header has {len(header.columns)}"
            # the row is not stored: its fields cannot be matched to columns, so its
            # source ids could not be pseudonymised
            file_q.append(
                RejectedRow(
                    name,
                    row_number,
                    [reason(RuleCode.WRONG_FIELD_COUNT, None, str(fields), why)],
                    {"_not_stored": "malformed row"},
                )
            )
        t = time.perf_counter()
        load.stage(conn, name, checked.staged)
        r.seconds["stage"] += time.perf_counter() - t
        _fault_point("stage")  # the first chunk staged
        file_findings += checked.findings
        file_q += checked.rejected
        r.context.unmapped.update(checked.unmapped)
        if spec.on_valid is not None:
            assert checked.valid is not None and checked.patient_keys is not None
            ids = piece.frame.loc[checked.valid.index, "patient_id"].to_numpy()
            spec.on_valid(r.facts, checked.valid, checked.patient_keys, ids)
        if r.progress:
            r.progress(name, counts.read + (plan.count - skipped_before if plan is not None else 0))
    if plan is not None:  # rows skipped unread as unchanged: read and loaded all the same
        skipped = plan.count - skipped_before
        counts.read += skipped
        counts.unchanged_rows += skipped
    return _FileReading(file_q, file_findings, plan)


def _counted(pieces: Iterator[Chunk], counts: FileCounts, seconds: dict[str, float]) -> Iterator[Chunk]:
    """The chunks of a file as read, counted, the reading timed."""
    while True:
        t = time.perf_counter()
        piece = next(pieces, None)
        seconds["read"] += time.perf_counter() - t
        if piece is None:
            return
        _fault_point("read")  # the first chunk read, nothing validated yet
        counts.read += piece.rows + len(piece.malformed)
        yield piece


def root_causes(rows: list[RejectedRow]) -> list[tuple[str, str | None, int]]:
    """(rule, column, rows) of rejected rows, most frequent first, with orphans — which follow
    from their patient's own rejection — after every other cause."""
    counts = Counter(
        (r.rule, r.column) for row in rows for r in {(x.rule, x.column): x for x in row.reasons}.values()
    )
    ranked = sorted(
        counts.items(), key=lambda kv: (kv[0][0] == RuleCode.ORPHAN, -kv[1], kv[0][0], kv[0][1] or "")
    )
    return [(str(rule), column, n) for (rule, column), n in ranked]


def _mostly_rejected(
    summary: RunSummary, quarantine: list[RejectedRow], max_rate: float | None
) -> list[Problem]:
    """Files whose share of rejected rows passes ``max_rate`` (files of at least
    ``MIN_ROWS_FOR_RATE`` rows), each with its most frequent root causes."""
    if max_rate is None:
        return []
    problems = []
    for name, c in summary.files.items():
        if c.read < MIN_ROWS_FOR_RATE or c.quarantined / c.read <= max_rate:
            continue
        causes = root_causes([q for q in quarantine if q.file == name])[:3]
        text = ", ".join(f"{rule} in {column or 'the row'} ({n:,})" for rule, column, n in causes)
        problems.append(
            Problem(
                f"{name}.csv",
                f"{c.quarantined:,} of {c.read:,} rows ({c.quarantined / c.read:.0%}) would be quarantined, "
                f"more than {max_rate:.0%}; most frequent: {text}",
            )
        )
    return problems


FAULT_STAGES = ("read", "validate", "stage", "merge", "retire", "quarantine", "commit", "derive")


def _fault_point(stage: str = "commit") -> None:
    """Test hook: with REGISTRY_FAULT_PAUSE_FILE set, announce (by creating that file) that the
    run reached ``stage`` (REGISTRY_FAULT_STAGE, default ``commit``: every write of the load done
    but not committed), then wait — so tests can kill the process or start a competing run at
    that moment (docs/operations.md)."""
    pause = fault_pause()
    if pause is not None and pause.stage == stage:
        pause.marker.touch()
        time.sleep(pause.seconds)


def _quarantine_duplicates(conn: Any, name: str, id_column: str, file_q: list[RejectedRow]) -> set[str]:
    """Rows sharing a source id are all invalid: move staged ones to quarantine and add the
    reason to quarantined ones. Returns the duplicated keys (pseudonyms)."""
    key_field = load.TARGETS[name][1]
    q_keys = [q.row_data.get(id_column) for q in file_q]
    load.stage_quarantined_keys(conn, name, [k for k in q_keys if k])
    dups = load.duplicate_rows(conn, name)
    dup_keys = set(dups[key_field]) if len(dups) else set()
    seen = Counter(k for k in q_keys if k)
    dup_keys |= {k for k, n in seen.items() if n > 1}
    dup_keys |= load.staged_keys_among(conn, name, [k for k in seen if k not in dup_keys])
    for q in file_q:
        k = q.row_data.get(id_column)
        if k in dup_keys:
            q.reasons.append(reason(RuleCode.DUPLICATE_ID, id_column, k, f"{id_column} in {name}.csv"))
    if len(dups):
        for rec in dups.to_dict("records"):
            data = {c: _jsonable(v) for c, v in rec.items() if c not in ("run_id", "source_row")}
            data["_form"] = "normalised (duplicate found after parsing)"
            why = reason(RuleCode.DUPLICATE_ID, id_column, rec[key_field], f"{id_column} in {name}.csv")
            file_q.append(RejectedRow(name, int(rec["source_row"]), [why], data))
        load.unstage(conn, name, [int(r) for r in dups["source_row"]])
    file_q.sort(key=lambda q: q.row_number)
    return dup_keys


def _jsonable(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def _upsert_site(conn: Any, manifest: Manifest, run_id: int) -> None:
    exists = conn.execute(select(Site.site_code).where(Site.site_code == manifest.site_id)).first()
    values = {
        "last_exported_at": manifest.exported_at,
        "last_data_cutoff": manifest.data_cutoff,
        "last_run_id": run_id,
    }
    if exists:
        conn.execute(update(Site).where(Site.site_code == manifest.site_id).values(**values))
    else:
        conn.execute(insert(Site).values(site_code=manifest.site_id, first_loaded_at=_now(), **values))
