"""Read the run ledger and the quarantine (for `registry etl runs` / `etl quarantine`)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, func, select

from registry.contract.rules import Reason, RejectedRow
from registry.core.csvsafe import safe_cell
from registry.core.errors import NotFound
from registry.db.models import EtlRun, QuarantinedRow


def list_runs(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The run ledger, newest first: status, site, counts, timings, unmapped drug names."""
    with engine.connect() as conn:
        rows = conn.execute(select(EtlRun).order_by(EtlRun.run_id.desc()).limit(limit)).all()
        q = dict(
            conn.execute(select(QuarantinedRow.run_id, func.count()).group_by(QuarantinedRow.run_id)).all()
        )
    out = []
    for r in rows:
        counts = r.file_counts or {}
        out.append(
            {
                "run_id": r.run_id,
                "status": r.status,
                "site": r.site_code,
                "mode": r.mode,
                "exported_at": r.exported_at.isoformat() if r.exported_at else None,
                "data_cutoff": r.data_cutoff.isoformat() if r.data_cutoff else None,
                "started_at": r.started_at.isoformat() if r.started_at else None,
                "read": sum(int(c.get("read", 0)) for c in counts.values()),
                "loaded": sum(int(c.get("loaded", 0)) for c in counts.values()),
                "quarantined": int(q.get(r.run_id, 0)),
                "seconds": (r.timings or {}).get("total_s"),
                "unmapped_drugs": r.unmapped_drugs or {},
                "columns_gone": r.columns_gone or [],
                "message": r.message,
            }
        )
    return out


def iter_quarantine(engine: Engine, run_id: int | None = None) -> Iterator[tuple[int, RejectedRow]]:
    """(run id, rejected row) of one run's quarantine (default: the latest run that has any).
    An unknown run id is a ``NotFound`` (64), raised here, before any row is read."""
    with engine.connect() as conn:
        if run_id is None:
            run_id = conn.execute(select(func.max(QuarantinedRow.run_id))).scalar()
            if run_id is None:
                return iter(())
        elif conn.execute(select(EtlRun.run_id).where(EtlRun.run_id == run_id)).first() is None:
            latest = conn.execute(select(func.max(EtlRun.run_id))).scalar()
            raise NotFound(
                f"no run {run_id} in the ledger"
                + (f" (the latest is run {latest})" if latest else " (it is empty)"),
                hint="`registry etl runs` lists the runs",
            )
    return _quarantined_rows(engine, run_id)


def _quarantined_rows(engine: Engine, run_id: int) -> Iterator[tuple[int, RejectedRow]]:
    with engine.connect() as conn:
        stmt = (
            select(QuarantinedRow)
            .where(QuarantinedRow.run_id == run_id)
            .order_by(QuarantinedRow.file, QuarantinedRow.row_number)
        )
        for r in conn.execute(stmt):
            reasons = [Reason.from_json(x) for x in r.reasons]
            yield r.run_id, RejectedRow(r.file, r.row_number, reasons, r.row_data)


QUARANTINE_CSV_COLUMNS = [
    "run_id",
    "file",
    "row_number",
    "column",
    "value",
    "rule",
    "severity",
    "message",
    "row_data",
]


def write_quarantine_csv(rows: Iterable[tuple[int | None, RejectedRow]], out: Path | IO[str]) -> int:
    """One CSV line per reason (a row with three problems gives three lines)."""
    fh: IO[str]
    close = False
    if isinstance(out, Path):
        fh = out.open("w", newline="", encoding="utf-8")
        close = True
    else:
        fh = out
    n = 0
    try:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(QUARANTINE_CSV_COLUMNS)
        for run_id, row in rows:
            for reason in row.reasons:
                w.writerow(
                    safe_cell(v)
                    for v in [
                        "" if run_id is None else run_id,
                        row.file,
                        row.row_number,
                        reason.column or "",
                        "" if reason.value is None else reason.value,
                        reason.rule,
                        reason.severity,
                        reason.message,
                        json.dumps(row.row_data, ensure_ascii=False),
                    ]
                )
                n += 1
    finally:
        if close:
            fh.close()
    return n
