"""Reading a bundle's files: each file chunk by chunk, checked (here, or by forked worker
processes for a large file) and staged in file order, unchanged rows of a full export matched by
their hashes and skipped, with the pause the crash tests use at each stage."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from etl import checkpoints, load
from etl.bundle import Bundle, FileHeader
from etl.extract import Chunk, RowHashing, iter_chunks
from etl.specs import READING_VERSION, RowContext
from etl.summary import FileCounts, Progress
from etl.transform import Pseudonymiser, finding_rows, quarantine_row, row_hash_key, to_rows
from etl.validate import PatientFacts, check_chunk
from registry.contract.rules import RejectedRow, RuleCode, reason
from registry.core.parallel import forked_pool, in_order


@dataclass
class RowPlan:
    """A leaf file compared row by row with the site's current records: a row whose keyed hash
    is a stored record's (of a patient whose own rows did not change) is counted as read and
    loaded and not read again; the rest is validated, staged and merged as usual."""

    stored: np.ndarray  # hashes of the site's current records of the file
    eligible: pd.Index  # those an unchanged row may match
    seen: np.ndarray  # per eligible hash: matched tonight
    repeated: bool = False  # a hash matched twice (a row sent twice)
    count: int = 0  # hashes matched so far

    @classmethod
    def make(cls, conn: Any, name: str, site: str) -> RowPlan | None:
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
class Reader:
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
    workers: int = 1  # processes checking a large file that does not feed the patient facts


@dataclass
class FileReading:
    rejected: list[RejectedRow]
    findings: list[dict[str, Any]]
    plan: RowPlan | None

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
class Checked:
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


def _check_piece(spec: Any, r: Reader, piece: Chunk) -> Checked:
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
        return Checked(staged, rejected, findings, context.unmapped, seconds=seconds)
    return Checked(staged, rejected, findings, context.unmapped, res.valid, rows["patient_key"], seconds)


_CHECKER: dict[str, Any] = {}  # what a checking worker inherits from its parent (by fork)


def _check_in_worker(piece: Chunk) -> Checked:
    return _check_piece(_CHECKER["spec"], _CHECKER["reader"], piece)


def _checked_pieces(
    pieces: Iterator[Chunk], spec: Any, r: Reader, parallel: bool
) -> Iterator[tuple[Chunk, Checked]]:
    """Each chunk with its check, in file order: done here, or (``parallel``) by worker
    processes forked now (they inherit the facts, the pseudonymiser and the vocabulary) while
    this process reads the next chunks and stages the checked ones; at most two chunks a
    worker wait, so memory stays bounded by the chunk size."""
    workers = r.workers if parallel else 1
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


def read_file(
    conn: Any,
    bundle: Bundle,
    spec: Any,
    header: FileHeader,
    r: Reader,
    counts: FileCounts,
    plan: RowPlan | None,
) -> FileReading:
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
        checkpoints.reached("validate")  # the first chunk validated, not staged
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
        checkpoints.reached("stage")  # the first chunk staged
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
    return FileReading(file_q, file_findings, plan)


def _counted(pieces: Iterator[Chunk], counts: FileCounts, seconds: dict[str, float]) -> Iterator[Chunk]:
    """The chunks of a file as read, counted, the reading timed."""
    while True:
        t = time.perf_counter()
        piece = next(pieces, None)
        seconds["read"] += time.perf_counter() - t
        if piece is None:
            return
        checkpoints.reached("read")  # the first chunk read, nothing validated yet
        counts.read += piece.rows + len(piece.malformed)
        yield piece
