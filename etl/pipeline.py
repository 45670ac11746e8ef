"""One ETL run: extract -> validate -> transform -> load, recorded in the run ledger.

The load is one transaction: a refused, failed, interrupted or killed run leaves the registry
exactly as it was (the ledger row, written in its own transactions, says what happened).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import OperationalError

from etl import checkpoints
from etl.bundle import DEFAULT_CHUNK_ROWS, Bundle, FileHeader, Limits, Manifest, read_manifest
from etl.extract import read_header
from etl.loading import (
    _FACTS_FILES,
    DEFAULT_MAX_QUARANTINE_RATE,
    Load,
    LoadOptions,
    _check_order,
    _now,
)
from etl.specs import READING_VERSION, SPECS
from etl.summary import Progress, RunSummary
from registry.core.config import Resources
from registry.core.dates import as_date
from registry.core.enums import RunStatus
from registry.core.errors import BundleRefused, Interrupted, Problem, RegistryError
from registry.db.database import (
    check_writer_lock,
    lost_or_full,
    require_current_schema,
    writer_lock,
)
from registry.db.keyprint import check_key
from registry.db.models import EtlRun, QuarantinedRow, SourceFile


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
    resources: Resources | None = None,
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
    resources
        Worker processes and bundle limits (``Settings.resources``; None: the defaults, as
        many workers as cores).

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
    res = resources or Resources()
    derive_workers = res.derive_workers
    try:
        with Bundle(path, Limits.of(res.limits)) as bundle:
            require_current_schema(engine)
            lock = writer_lock(engine) if not dry_run else contextlib.nullcontext()
            with lock:
                with engine.connect() as conn:
                    check_key(conn, key)  # another key would re-pseudonymise and retire everything
                bundle_hash = bundle.sha256()  # one pass over the bundle's bytes
                ledger = _Ledger(engine, enabled=not dry_run)
                ledger.start(bundle_hash, force)
                summary = RunSummary(status=RunStatus.RUNNING)
                _warn_unexpected(bundle, summary)
                manifest: Manifest | None = None
                try:
                    manifest = read_manifest(bundle)
                    headers = _headers(engine, bundle, manifest, summary, bundle_hash, columns_gone)
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

                    options = LoadOptions(
                        dry_run=dry_run,
                        force=force,
                        chunk_rows=chunk_rows,
                        progress=progress,
                        max_quarantine_rate=max_quarantine_rate,
                        row_by_row=row_by_row and same_reading,
                        workers=res.workers("load"),
                        before_commit=before_commit,
                    )
                    Load(
                        engine,
                        bundle,
                        manifest,
                        headers,
                        key,
                        summary,
                        ledger.run_id or 0,
                        unchanged,
                        options,
                    ).run()
                    summary.status = RunStatus.VALIDATED if dry_run else RunStatus.SUCCEEDED
                except _AlreadyLoaded:
                    raise
                except BundleRefused as exc:
                    _ended(summary, ledger, manifest, t0, RunStatus.REFUSED, exc.message)
                    raise
                except KeyboardInterrupt:
                    why = "interrupted (Ctrl-C) during the load; nothing of the run was committed"
                    _ended(summary, ledger, manifest, t0, RunStatus.INTERRUPTED, why)
                    raise Interrupted(
                        f"interrupted; nothing was changed (run {ledger.run_id} recorded as interrupted)"
                    ) from None
                except BaseException as exc:
                    why = exc.message if isinstance(exc, RegistryError) else f"{type(exc).__name__}"
                    _ended(summary, ledger, manifest, t0, RunStatus.FAILED, why)
                    raise
                if dry_run:  # a load's final status was written in its own transaction
                    summary.timings["load_s"] = round(time.perf_counter() - t0, 3)
                    summary.message = _describe(summary)
    except _AlreadyLoaded:
        if derive:  # finish what a run killed during its derivation left flagged
            _derive_pending(engine, summary, progress, derive_workers, pause=False)
        return summary
    if not dry_run:
        _after_commit(engine, summary, progress, ledger.run_id, derive, t0, derive_workers)
    else:
        summary.timings["total_s"] = round(time.perf_counter() - t0, 3)
    return summary


def _after_commit(
    engine: Engine,
    summary: RunSummary,
    progress: Progress | None,
    run_id: int | None,
    derive: bool,
    t0: float,
    workers: int | None,
) -> None:
    """The derivation of the patients the load flagged, then the run's full timings in its row."""
    if derive:
        _derive_after_load(engine, summary, progress, run_id, workers)
    summary.timings["total_s"] = round(time.perf_counter() - t0, 3)
    if run_id is not None:
        with engine.begin() as conn:
            conn.execute(update(EtlRun).where(EtlRun.run_id == run_id).values(timings=summary.timings))


def _warn_unexpected(bundle: Bundle, summary: RunSummary) -> None:
    extra = bundle.unexpected_members()
    if extra:  # counted, not named: a file name can identify a patient
        summary.warnings.append(
            f"{extra} unexpected file(s) in the bundle ignored "
            "(only manifest.json and the input files are read)"
        )


def _headers(
    engine: Engine,
    bundle: Bundle,
    manifest: Manifest,
    summary: RunSummary,
    bundle_hash: str,
    columns_gone: frozenset[str],
) -> dict[str, FileHeader]:
    """Every file's header, checked against the contract and against the columns the site
    delivered before; the manifest's facts in the summary."""
    headers = {name: read_header(bundle, spec) for name, spec in SPECS.items()}
    summary.site_id, summary.mode = manifest.site_id, manifest.mode
    summary.data_cutoff = manifest.data_cutoff
    summary.bundle_hash = bundle_hash
    _check_columns(engine, manifest, headers, columns_gone)
    summary.columns_gone = sorted(columns_gone)
    return headers


def _ended(
    summary: RunSummary, ledger: _Ledger, manifest: Manifest | None, t0: float, status: RunStatus, why: str
) -> None:
    """A run that ends without committing: its status and reason in the ledger."""
    summary.status = status
    summary.message = why
    summary.timings["total_s"] = round(time.perf_counter() - t0, 3)
    ledger.finish(summary, manifest)


def _derive_after_load(
    engine: Engine, summary: RunSummary, progress: Progress | None, run_id: int | None, workers: int | None
) -> None:
    """Derive the patients the committed load flagged; an interruption or a lost server says
    what was committed and what finishes it."""
    committed = f"run {run_id}'s load was committed, its derivation was not"
    try:
        _derive_pending(engine, summary, progress, workers)
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


class _AlreadyLoaded(Exception):
    """Internal: the bundle was loaded before; leave the lock, then finish a pending derivation."""


def _derive_pending(
    engine: Engine, summary: RunSummary, progress: Progress | None, workers: int | None, *, pause: bool = True
) -> None:
    """Derive the patients the load flagged (and any a killed run left flagged)."""
    from registry.derive.run import derive_pending

    if pause:
        checkpoints.reached("derive")  # the load committed, its patients flagged, nothing derived yet
    t1 = time.perf_counter()
    derive_progress = (lambda done, _total: progress("derivation", done)) if progress else None
    result = derive_pending(engine, progress=derive_progress, workers=workers)
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
    return latest is None or as_date(latest) <= manifest.data_cutoff
