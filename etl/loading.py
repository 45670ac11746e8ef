"""Loading one bundle: the plan, staging every file, the accounting, the merge and the commit,
in one transaction (``Load``), with what the steps share (duplicates, retirement guards, the
site's row, the files remembered for the next night)."""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, delete, insert, select, text, update

from etl import checkpoints, load
from etl.bundle import Bundle, FileHeader, Manifest
from etl.reading import LOAD_STAGES, Reader, RowPlan, read_file
from etl.specs import FILE_ORDER, READING_VERSION, ROOT, SPECS, RowContext
from etl.summary import FileCounts, Progress, RunSummary
from etl.transform import Pseudonymiser
from etl.validate import PatientFacts
from registry.contract.rules import RejectedRow, RuleCode, reason
from registry.core.enums import RunStatus
from registry.core.errors import BundleRefused, Problem
from registry.db.bulk import refresh_statistics
from registry.db.database import (
    lock_work,
)
from registry.db.keyprint import remember_key
from registry.db.models import EtlRun, InputFinding, Patient, QuarantinedRow, Site, SourceFile
from registry.db.vocabulary import vocabulary_map

DEFAULT_MAX_QUARANTINE_RATE = 0.5  # a file losing more than this to the quarantine: refuse all
MIN_ROWS_FOR_RATE = 10  # ... when it has at least this many rows


DEFAULT_MAX_QUARANTINE_RATE = 0.5  # a file losing more than this to the quarantine: refuse all


MIN_ROWS_FOR_RATE = 10  # ... when it has at least this many rows


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _contract_columns(name: str) -> set[str]:
    return {c.name for c in SPECS[name].columns}


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


@dataclass(frozen=True)
class LoadOptions:
    """How a load runs (``run_bundle``'s choices)."""

    dry_run: bool
    force: bool
    chunk_rows: int
    progress: Progress | None
    max_quarantine_rate: float | None
    # skipping unchanged rows allowed (not a dry run, not forced, cutoff not earlier)
    row_by_row: bool
    workers: int = 1  # processes checking a large file (Resources.workers("load"))
    # the ledger's final status, written in the load's transaction (the lock still held)
    before_commit: Callable[[Connection], None] = lambda conn: None


class Load:
    """One bundle into the registry, in one transaction under the writer lock: ``plan`` (what
    the files are checked against), ``stage`` (every file read, checked and staged; duplicates
    found), ``account`` (read = loaded + quarantined; a file mostly rejected refuses the bundle;
    a dry run stops here), ``merge`` (the change log, the upserts, retirement, quarantine and
    findings) and ``commit``. Anything raised rolls everything back."""

    def __init__(
        self,
        engine: Engine,
        bundle: Bundle,
        manifest: Manifest,
        headers: dict[str, FileHeader],
        key: bytes,
        summary: RunSummary,
        run_id: int,
        unchanged: set[str],
        options: LoadOptions,
    ) -> None:
        self.engine, self.bundle, self.manifest, self.headers = engine, bundle, manifest, headers
        self.key, self.summary, self.run_id, self.unchanged, self.o = key, summary, run_id, unchanged, options
        self.pseudo = Pseudonymiser(key, manifest.site_id)
        self.unmapped: Counter[str] = Counter()
        self.quarantine: list[RejectedRow] = []
        self.findings: list[dict[str, Any]] = []
        self.facts = PatientFacts()
        # files compared row by row with the site's current records (None until planned)
        self.rowwise: dict[str, RowPlan | None] = {}
        self.first_of_site = False  # the registry held none of the site's patients (merge)

    def run(self) -> None:
        self._header_warnings()
        conn = self.engine.connect()
        trans = conn.begin()
        if not self.o.dry_run:
            lock_work(conn)  # first: another run's work (past a lost lock) ends before this one's begins
        try:
            reader = self.plan(conn)
            self.stage(conn, reader)
            if self.account(conn, reader):
                self.merge(conn)
                _drop_absent(self.summary, self.headers)
                self.o.before_commit(conn)
                trans.commit()
            else:  # a dry run: everything checked, nothing kept
                self.summary.quarantine = self.quarantine
                _drop_absent(self.summary, self.headers)
                trans.rollback()
        except BaseException:
            if trans.is_active:
                trans.rollback()
            raise
        finally:
            conn.close()

    def _header_warnings(self) -> None:
        for name, h in self.headers.items():
            counts = self.summary.files.setdefault(name, FileCounts())
            if len(h.ignored) > 5:  # one line, not thousands
                counts.warnings += 1
                shown = ", ".join(repr(c) for c in h.ignored[:5])
                self.summary.warnings.append(
                    f"{name}.csv: {len(h.ignored)} unknown columns ignored ({shown}, ...)"
                )
            else:
                for col in h.ignored:
                    counts.warnings += 1
                    self.summary.warnings.append(f"{name}.csv: unknown column {col!r} ignored")
            for col in h.identifiers_dropped:
                counts.warnings += 1
                self.summary.warnings.append(
                    f"{name}.csv: column {col!r} looks like a direct identifier; dropped, not stored"
                )

    def plan(self, conn: Connection) -> Reader:
        """The vocabulary, the patients an incremental bundle's rows may belong to, the reader
        every file shares, and which files are compared row by row."""
        manifest = self.manifest
        with self.engine.connect() as ro:
            vocab = vocabulary_map(ro)
            if manifest.mode == "incremental":
                self.facts.registry_patients = {
                    k
                    for (k,) in ro.execute(
                        select(Patient.patient_key).where(
                            Patient.site_code == manifest.site_id, Patient.is_current
                        )
                    )
                }
        load.create_stages(conn)
        row_context = RowContext(self.pseudo, vocab, manifest.site_id, self.unmapped)
        reader = Reader(
            self.pseudo,
            self.key,
            row_context,
            self.facts,
            manifest.data_cutoff,
            self.run_id,
            self.o.chunk_rows,
            self.o.progress,
            copy_csv=conn.dialect.name == "postgresql",
            workers=self.o.workers,
        )
        if set(_FACTS_FILES) <= self.unchanged and not set(SPECS) <= self.unchanged:
            # the patient files, sent again unchanged and read cleanly last time, are the
            # site's current records: the changed files are checked against those
            self.facts.frame = load.patient_facts(conn, manifest.site_id)
        if self.o.row_by_row and manifest.mode == "full":
            self.rowwise = dict.fromkeys(_LEAF_FILES)
        return reader

    def stage(self, conn: Connection, reader: Reader) -> None:
        """Every file the bundle has and the site changed: read, checked and staged."""
        for spec in SPECS.values():
            name = spec.name
            counts = self.summary.files[name]
            if name in self.unchanged:  # byte for byte the site's last full delivery: not read again
                counts.unchanged_file = True
                continue
            if not self.headers[name].present:  # an optional file the bundle does not have
                continue
            t = time.perf_counter()
            self._stage_file(conn, spec, reader, counts)
            self.summary.timings[f"{name}_s"] = round(time.perf_counter() - t, 3)
            if name == _LAST_FACTS_FILE and self.manifest.mode == "full" and (self.rowwise or self.unchanged):
                dirty = load.mark_dirty_patients(conn, self.manifest.site_id, _FACTS_FILES)
                if dirty:  # a file sent unchanged must still be checked against those patients
                    self.unchanged -= set(_LEAF_FILES)

    def _stage_file(self, conn: Connection, spec: Any, reader: Reader, counts: FileCounts) -> None:
        name = spec.name
        unmapped_before = sum(self.unmapped.values())
        unmapped_snapshot = Counter(self.unmapped)
        plan = self.rowwise.get(name)
        if plan is None and name in self.rowwise:  # a leaf file of a full export: compare row by row
            plan = self.rowwise[name] = RowPlan.make(conn, name, self.manifest.site_id)
        reading = read_file(conn, self.bundle, spec, self.headers[name], reader, counts, plan)
        if plan is not None and reading.conflicts(conn, name, spec.id_column):
            # a row sent unchanged shares its id with another row (a new duplicate): read the
            # whole file again, so the duplicate rule sees every row
            load.clear_stage(conn, name)
            self.unmapped.clear()
            self.unmapped.update(unmapped_snapshot)
            counts.read = counts.unchanged_rows = 0
            self.rowwise[name] = None
            reading = read_file(conn, self.bundle, spec, self.headers[name], reader, counts, None)
        file_q = reading.rejected
        load.index_stage(conn, name)
        dup_keys = _quarantine_duplicates(conn, name, spec.id_column, file_q)
        if spec.on_done is not None:
            spec.on_done(self.facts, dup_keys)
        counts.quarantined = len(file_q)
        self.quarantine.extend(file_q)
        file_findings = [f for f in reading.findings if f["record_key"] not in dup_keys]
        counts.findings = len(file_findings)
        self.findings.extend(file_findings)
        counts.warnings += sum(self.unmapped.values()) - unmapped_before

    def account(self, conn: Connection, reader: Reader) -> bool:
        """Every row read is loaded or quarantined; the unmapped drugs; a file mostly rejected
        refuses the bundle (a dry run only warns). False for a dry run: nothing to write."""
        summary = self.summary
        for stage in LOAD_STAGES:
            summary.timings[f"{stage}_s"] = round(reader.seconds[stage], 3)
        for name in FILE_ORDER:
            staged = conn.execute(text(f"SELECT COUNT(*) FROM {load.stage_name(name)}")).scalar()
            counts = summary.files[name]
            counts.loaded = int(staged or 0) + counts.unchanged_rows
            if counts.read != counts.loaded + counts.quarantined:  # pragma: no cover - invariant
                raise RuntimeError(f"row accounting broken for {name}")
        summary.unmapped_drugs = dict(self.unmapped.most_common())
        for drug, n in self.unmapped.most_common(20):
            summary.warnings.append(f"treatments.csv: drug {drug!r} not in the vocabulary ({n} rows)")
        mostly_rejected = _mostly_rejected(summary, self.quarantine, self.o.max_quarantine_rate)
        if mostly_rejected and self.o.dry_run:
            summary.warnings += [str(p) + ": a load would be refused" for p in mostly_rejected]
        elif mostly_rejected:
            raise BundleRefused(
                mostly_rejected,
                hint="the export itself is probably broken (a date format, a column mix-up): fix it and "
                "deliver again; `registry etl validate` shows every row's reasons; "
                "--max-quarantine-rate changes the threshold",
            )
        return not self.o.dry_run

    def merge(self, conn: Connection) -> None:
        """The guards of a write (a full bundle without patients; a run that loaded this bundle
        meanwhile), the site and the key, the change log and the upserts, retirement of what a
        full export no longer sends, statistics, the files remembered, quarantine and findings."""
        t = time.perf_counter()
        summary, manifest, run_id = self.summary, self.manifest, self.run_id
        self._refuse_empty_full(conn)
        # checked again in the work transaction: a run that committed while this one read
        if _check_order(self.engine, manifest, summary.bundle_hash or "", self.o.force, conn) is not None:
            raise BundleRefused([Problem("manifest.json", "another run loaded this bundle meanwhile")])
        _upsert_site(conn, manifest, run_id)
        remember_key(conn, self.key, run_id)
        spent = {"changelog_s": 0.0, "upsert_s": 0.0}
        # the registry holds none of the site's patients: a row a patient and file in the log,
        # every staged row a new record, nothing to retire
        first_of_site = self.first_of_site = load.first_load_of_site(conn, manifest.site_id)
        for name in FILE_ORDER:
            # the change log (which flags the changed records' patients), then the upsert
            t1 = time.perf_counter()
            if first_of_site:
                summary.files[name].changed = load.log_first_load(conn, name, run_id)
            else:
                summary.files[name].changed = load.log_changes(conn, name, run_id)
            t2 = time.perf_counter()
            only_new = first_of_site or load.only_added(conn, name, run_id, summary.files[name].changed)
            load.merge(conn, name, only_new=only_new)
            spent["changelog_s"] += t2 - t1
            spent["upsert_s"] += time.perf_counter() - t2
        checkpoints.reached("merge")
        t1 = time.perf_counter()
        self._retire(conn)
        spent["retire_s"] = time.perf_counter() - t1
        dangling = load.dangling_references(conn)  # nothing commits that refers to nothing
        if dangling:
            raise BundleRefused(
                [
                    Problem(
                        SPECS[name].filename, f"{n} merged records name a {column} the registry does not have"
                    )
                    for (name, column), n in dangling.items()
                ],
                hint="a fault of the registry's checks, not of the bundle: nothing was changed; report it",
            )
        summary.timings.update({k: round(v, 3) for k, v in spent.items()})  # parts of merge_s
        checkpoints.reached("retire")
        refresh_statistics(
            conn,
            {
                load.TARGETS[n][0]: c.changed + c.retired
                for n, c in summary.files.items()
                if n in load.TARGETS
            },
        )
        _remember_files(conn, self.bundle, manifest, summary, run_id, self.unchanged, self.headers)
        if self.quarantine:
            conn.execute(insert(QuarantinedRow), [{**q.to_json(), "run_id": run_id} for q in self.quarantine])
        checkpoints.reached("quarantine")
        if self.findings:
            conn.execute(insert(InputFinding), [{**f, "run_id": run_id} for f in self.findings])
        load.drop_stages(conn)
        summary.timings["merge_s"] = round(time.perf_counter() - t, 3)
        checkpoints.reached("commit")

    def _refuse_empty_full(self, conn: Connection) -> None:
        root = self.summary.files[ROOT]
        if self.manifest.mode != "full" or root.read or root.unchanged_file or self.o.force:
            return
        has_current = conn.execute(
            select(Patient.patient_key)
            .where(Patient.site_code == self.manifest.site_id, Patient.is_current)
            .limit(1)
        ).first()
        if has_current is not None:
            raise BundleRefused(
                [Problem(SPECS[ROOT].filename, "a full bundle without patients would retire the whole site")],
                hint="check the export; rerun with --force if the site really has no patients",
            )

    def _retire(self, conn: Connection) -> None:
        """A full export retires the records it no longer sends; an optional file left out, or
        an unchanged one not read again, retires nothing; nor does one in which a stray quote
        joined lines (the records it swallowed cannot be told from records no longer sent), nor
        a site's first load (nothing of the site predates it)."""
        joined = _joined_lines(self.quarantine, self.bundle, self.summary)
        if self.manifest.mode != "full" or self.first_of_site:
            return
        for name in reversed(FILE_ORDER):
            if self.headers[name].present and name not in self.unchanged and name not in joined:
                plan = self.rowwise.get(name)
                if plan is not None:
                    load.stage_gone(conn, name, plan.gone())
                self.summary.files[name].retired = load.retire_missing(
                    conn, name, self.manifest.site_id, self.run_id, gone_only=plan is not None
                )
