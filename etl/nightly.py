"""The nightly job: take every bundle waiting in an inbox, per site in ``exported_at`` order and
each exactly once; derive once; write the night's report set and what changed since the last
night; keep the last N nights of reports.

Bundles that load move to ``<inbox>/processed/<night>/``; refused ones (structure, stale,
already loaded) to ``<inbox>/rejected/<night>/`` with ``<name>.reason.txt`` beside them. A
bundle is moved only after its load committed, so a night that dies leaves each bundle either
loaded and moved, or loaded and still waiting (the next night sees it was already loaded and
moves it aside without loading it again), or untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from etl.extract import Bundle, read_manifest
from etl.pipeline import run_bundle
from registry.core.enums import RunStatus
from registry.core.errors import EXIT_DATA, EXIT_OK, LockHeld, RegistryError, ReportRefused
from registry.core.files import share_tree
from registry.db.keyprint import check_key
from registry.db.models import FollowUp, Patient, PatientSummary

Log = Callable[[str, dict[str, Any]], None]  # (event, fields without identifiers)
REPORTS = ("lenalidomide-relapse",)  # the study reports regenerated every night
OUTCOMES = "transplant-outcomes"  # and the centre's outcome report


@dataclass
class BundleOutcome:
    """What became of one bundle in a night."""

    path: str  # the bundle's name in the inbox
    site_id: str | None
    status: str  # succeeded | refused | unchanged
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    retired: int = 0
    message: str = ""
    moved_to: str = ""


@dataclass
class NightResult:
    """A night: every bundle's outcome, what changed, the reports written."""

    night: str
    bundles: list[BundleOutcome] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)
    reports: list[str] = field(default_factory=list)
    # report name -> why it was not written (e.g. an empty cohort, a cohort below --min-cell)
    reports_refused: dict[str, str] = field(default_factory=dict)
    min_cell: int | None = None  # counts below it never leave (changes.json, the JSON summary)

    @property
    def exit_code(self) -> int:
        """0 when every bundle loaded (quarantined rows are no failure) and every report was
        written; 65 when a bundle or a report was refused."""
        refused = any(b.status != RunStatus.SUCCEEDED for b in self.bundles) or self.reports_refused
        return EXIT_DATA if refused else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        """The night as JSON; with ``min_cell`` every count from 1 to min_cell - 1 is null."""
        return _suppress_counts(self._json(), self.min_cell)

    def _json(self) -> dict[str, Any]:
        return {
            "night": self.night,
            "bundles": [asdict(b) for b in self.bundles],
            "changes": self.changes,
            "reports": self.reports,
            "reports_refused": self.reports_refused,
            "exit_code": self.exit_code,
        }


@contextlib.contextmanager
def inbox_lock(inbox: Path) -> Iterator[None]:
    """One nightly run per inbox (``flock`` on ``<inbox>/.nightly.lock``; released if the
    process dies)."""
    fd = os.open(inbox / ".nightly.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(
                f"another nightly run is working on {inbox}",
                hint="wait for it; the next night takes the rest",
            ) from None
        yield
    finally:
        os.close(fd)


def waiting_bundles(inbox: Path) -> list[Path]:
    """Folders with a manifest and ``.zip`` files in the inbox (not the processed/rejected areas)."""
    out = []
    for p in sorted(inbox.iterdir()):
        if p.name in ("processed", "rejected") or p.name.startswith("."):
            continue
        if (p.is_dir() and (p / "manifest.json").exists()) or (p.is_file() and p.suffix == ".zip"):
            out.append(p)
    return out


def _order(paths: list[Path]) -> list[tuple[Path, str | None, dt.datetime | None, str | None]]:
    """(path, site, exported_at, problem) sorted per site by exported_at; unreadable manifests
    first (they are rejected without a load)."""
    items: list[tuple[Path, str | None, dt.datetime | None, str | None]] = []
    for p in paths:
        try:
            with Bundle(p) as b:
                m = read_manifest(b)
            items.append((p, m.site_id, m.exported_at, None))
        except RegistryError as exc:
            items.append((p, None, None, exc.message))
    return sorted(
        items,
        key=lambda it: (
            it[1] is not None,
            it[1] or "",
            it[2] or dt.datetime.min.replace(tzinfo=dt.UTC),
            it[0].name,
        ),
    )


def _facts(engine: Engine) -> dict[str, int]:
    """Counts the night's changes are measured with (current records only)."""
    with engine.connect() as conn:

        def count(q: Any) -> int:
            return int(conn.execute(q).scalar() or 0)

        return {
            "patients": count(select(func.count()).select_from(Patient).where(Patient.is_current)),
            "deaths": count(
                select(func.count())
                .select_from(FollowUp)
                .where(FollowUp.is_current, FollowUp.vital_status == "dead")
            ),
            "relapses": count(
                select(func.count())
                .select_from(PatientSummary)
                .where(PatientSummary.relapse_date.is_not(None))
            ),
            "second_lines": count(
                select(func.count()).select_from(PatientSummary).where(PatientSummary.l2_start.is_not(None))
            ),
        }


def _study(engine: Engine, name: str) -> Any:
    from registry.reports.inputs import study_report

    return study_report(engine, name)


# integers in the night's JSON that count no patients or rows
NOT_COUNTS = frozenset({"exit_code", "run_id", "bundles_taken", "bundles_refused"})


def _suppress_counts(value: Any, n: int | None, key: str = "") -> Any:
    if not n or key in NOT_COUNTS:
        return value
    if isinstance(value, dict):
        return {k: _suppress_counts(v, n, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_suppress_counts(v, n, key) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < n:
        return None
    return value


def _groups_or_none(engine: Engine, name: str, min_cell: int | None) -> dict[str, dict[str, Any]] | None:
    try:
        from registry.reports.suppress import released

        return _groups(released(_study(engine, name).data, min_cell))
    except ReportRefused:
        return None


def _groups(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each group's size and median OS from the 2nd line, as the released report shows them."""
    return {
        g: {"n": v["n"], "median_os_2l_months": v["endpoints"].get("os_2l", {}).get("median_months")}
        for g, v in data["groups"].items()
    }


def _move(path: Path, area: Path, reason: str | None = None) -> str:
    area.mkdir(parents=True, exist_ok=True)
    target = area / path.name
    if target.exists():  # a name delivered twice the same night: keep both
        target = area / f"{path.stem}-{dt.datetime.now(dt.UTC).strftime('%H%M%S%f')}{path.suffix}"
    shutil.move(str(path), target)
    if reason is not None:
        (area / f"{target.name}.reason.txt").write_text(reason + "\n", encoding="utf-8")
    return str(target)


def run_night(
    engine: Engine,
    inbox: Path,
    key: bytes,
    *,
    reports_dir: Path | None = None,
    keep_nights: int = 14,
    night: dt.date | None = None,
    min_cell: int | None = None,
    dq_thresholds: dict[str, float] | None = None,
    log: Log = lambda event, fields: None,
    report_group: str | None = None,
) -> NightResult:
    """Take every waiting bundle, derive once, write the night's reports and changes.

    Parameters
    ----------
    engine
        The registry (migrated).
    inbox
        The folder the sites deliver into.
    key
        The deployment's pseudonym key.
    reports_dir
        Where ``<YYYY-MM-DD>/`` report folders go (None: no reports, changes only in the result).
    keep_nights
        How many nights of report folders to keep.
    night
        The night's date (default: today, UTC).
    min_cell
        The small-cell threshold for the reports (None: reports stay inside the registry).
    dq_thresholds
        Data-quality thresholds from the configuration file.
    log
        Receives each event with fields that identify no patient.
    report_group
        A group to share the night's report folder with (0750/0640); None: private.

    Returns
    -------
    NightResult
        Every bundle's outcome, what changed, the reports written; ``exit_code`` 0 or 65.
    """
    from registry.derive.run import derive_pending
    from registry.reports.render import to_html, to_json
    from registry.reports.suppress import released

    today = (night or dt.datetime.now(dt.UTC).date()).isoformat()
    result = NightResult(today, min_cell=min_cell)
    with inbox_lock(inbox):
        with engine.connect() as conn:
            check_key(conn, key)  # a wrong key is the night's problem (78), not the bundles'
        before = _facts(engine)
        studies_before = (
            {name: _groups_or_none(engine, name, min_cell) for name in REPORTS} if before["patients"] else {}
        )
        for path, site, _exported, problem in _order(waiting_bundles(inbox)):
            outcome = BundleOutcome(path.name, site, RunStatus.REFUSED)
            if problem is not None:
                outcome.message = problem
            else:
                try:
                    s = run_bundle(engine, path, key, derive=False)
                except LockHeld:
                    raise
                except RegistryError as exc:
                    outcome.message = exc.message
                else:
                    outcome.status = s.status
                    outcome.message = s.message
                    outcome.read = sum(f.read for f in s.files.values())
                    outcome.loaded = sum(f.loaded for f in s.files.values())
                    outcome.quarantined = s.quarantined
                    outcome.retired = sum(f.retired for f in s.files.values())
            if outcome.status == RunStatus.SUCCEEDED:
                outcome.moved_to = _move(path, inbox / "processed" / today)
            else:
                outcome.moved_to = _move(path, inbox / "rejected" / today, outcome.message)
            log("bundle", {k: v for k, v in asdict(outcome).items() if k != "moved_to"})
            result.bundles.append(outcome)
        derived = derive_pending(engine)
        log("derived", {"patients": derived.patients, "rules_version": derived.rules_version})
        after = _facts(engine)
        studies_after = {}
        folder = None
        if reports_dir is not None:
            folder = reports_dir / today
            folder.mkdir(parents=True, exist_ok=True)
        night_changes = {
            "patients added": max(after["patients"] - before["patients"], 0),
            "patients retired": max(before["patients"] - after["patients"], 0),
            "deaths": after["deaths"] - before["deaths"],
            "relapses": after["relapses"] - before["relapses"],
            "second lines started": after["second_lines"] - before["second_lines"],
        }
        for name in REPORTS:

            def study_pages(name: str = name) -> dict[str, str]:
                report = _study(engine, name)
                # a short summary at the top of the page (counts go through the small-cell rule)
                report.data["since_last_night"] = {"night": today, "counts": dict(night_changes)}
                data = released(report.data, min_cell)  # once, for the pages and the night's record
                studies_after[name] = _groups(data)
                return {"html": to_html(data), "json": to_json(data)}

            _write_report(name, study_pages, folder, result, log)
        _write_report(OUTCOMES, lambda: _outcome_pages(engine, min_cell), folder, result, log)
        quality = _quality(engine, folder, dq_thresholds, min_cell)
        if quality["page"] is not None:
            result.reports.append(quality["page"])
        result.changes = {
            "bundles_taken": sum(b.status == RunStatus.SUCCEEDED for b in result.bundles),
            "bundles_refused": sum(b.status != RunStatus.SUCCEEDED for b in result.bundles),
            "patients_added": night_changes["patients added"],
            "patients_retired": night_changes["patients retired"],
            "patients_changed": max(derived.patients - max(after["patients"] - before["patients"], 0), 0),
            "deaths_added": night_changes["deaths"],
            "relapses_added": night_changes["relapses"],
            "second_lines_added": night_changes["second lines started"],
            "studies": {
                name: {"before": studies_before.get(name), "after": studies_after.get(name)}
                for name in REPORTS
            },
            "data_quality": {k: v for k, v in quality.items() if k != "page"},
        }
        if folder is not None:
            import json

            changes = folder / "changes.json"
            changes.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
            result.reports.append(str(changes))
            share_tree(folder, report_group)
            _keep_last(reports_dir, keep_nights)  # type: ignore[arg-type]
    return result


def _outcome_pages(engine: Engine, min_cell: int | None) -> dict[str, str]:
    """The transplant-outcomes report of the night, HTML and JSON."""
    from registry.reports.inputs import outcomes_report
    from registry.reports.outcomes import release_outcomes, render_outcomes

    data = release_outcomes(outcomes_report(engine).data, min_cell)
    return {fmt: render_outcomes(data, fmt) for fmt in ("html", "json")}


def _write_report(
    name: str, pages: Callable[[], dict[str, str]], folder: Path | None, result: NightResult, log: Log
) -> None:
    """Write a report's pages (``<name>.<format>``) into the night's folder, or, when the report
    refuses, its reason (``<name>.refused.txt``, the result and the log: the night exits 65)."""
    try:
        bodies = pages()
    except ReportRefused as exc:
        result.reports_refused[name] = exc.message
        log("report_refused", {"report": name, "reason": exc.message})
        if folder is not None:
            (folder / f"{name}.refused.txt").write_text(exc.message + "\n", encoding="utf-8")
        return
    if folder is not None:
        for fmt, body in bodies.items():
            path = folder / f"{name}.{fmt}"
            path.write_text(body, encoding="utf-8")
            result.reports.append(str(path))


def _quality(
    engine: Engine, folder: Path | None, overrides: dict[str, float] | None, min_cell: int | None
) -> dict[str, Any]:
    """Run the data-quality checks: the failures, the diff with the previous run and (with a
    report folder) the quality page."""
    from registry.quality.run import FAILED, diff, previous_run_ids, run_checks
    from registry.reports.quality import quality_html, trends

    run_id, results = run_checks(engine, overrides)
    previous = [r for r in previous_run_ids(engine, 2) if r != run_id]
    changes = diff(engine, previous[-1], run_id, overrides) if previous else None
    out: dict[str, Any] = {
        "run_id": run_id,
        "failed": [r.check_id for r in results if r.status == FAILED],
        "new": changes["new"] if changes else [],
        "resolved": changes["resolved"] if changes else [],
        "persisting": changes["persisting"] if changes else [],
        "page": None,
    }
    if folder is not None:
        page = folder / "data-quality.html"
        page.write_text(quality_html(run_id, results, trends(engine), changes, min_cell), encoding="utf-8")
        out["page"] = str(page)
    return out


def _keep_last(reports_dir: Path, nights: int) -> None:
    folders = sorted(
        p for p in reports_dir.iterdir() if p.is_dir() and len(p.name) == 10 and p.name[4] == "-"
    )
    for old in folders[:-nights] if nights > 0 else []:
        shutil.rmtree(old)
