"""What a run did: per-file counts (read = loaded + quarantined) and the run's summary, as
the CLI, the ledger and the night report show them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from registry.contract.rules import RejectedRow
from registry.core.enums import RunStatus

Progress = Callable[[str, int], None]  # (file name, rows done so far)


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
