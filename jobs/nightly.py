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

from sqlalchemy import Engine

from etl.bundle import Bundle, Limits, read_manifest
from etl.pipeline import run_bundle
from jobs.night_facts import NightState, gross_changes, snapshot, touched_patients
from registry.core.config import Resources
from registry.core.enums import RunStatus
from registry.core.errors import EXIT_DATA, EXIT_OK, Interrupted, LockHeld, RegistryError, ReportRefused
from registry.core.files import share_tree
from registry.db.keyprint import check_key

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
    run_id: int | None = None
    # rows quarantined per input file (only files with some)
    quarantined_by_file: dict[str, int] = field(default_factory=dict)


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
    # fatal data-quality checks that failed tonight: the registry is not fit for studies
    fatal_checks: list[str] = field(default_factory=list)
    night_run: int = 1  # the how-manieth run of this night's date (a same-day re-run is 2, ...)

    @property
    def exit_code(self) -> int:
        """0 when every bundle loaded (quarantined rows are no failure), every report was
        written and no fatal data-quality check failed; 65 otherwise."""
        refused = any(b.status != RunStatus.SUCCEEDED for b in self.bundles) or self.reports_refused
        return EXIT_DATA if refused or self.fatal_checks else EXIT_OK

    @property
    def problems(self) -> list[str]:
        """What makes the night fail, one phrase each (no counts below the threshold: names only)."""
        out = [f"fatal data-quality check failed: {c}" for c in self.fatal_checks]
        out += [f"bundle {b.path} {b.status}: {b.message}" for b in self.bundles if b.status != "succeeded"]
        out += [f"report {name} refused: {why}" for name, why in self.reports_refused.items()]
        return out

    def to_json(self) -> dict[str, Any]:
        """The night as JSON; with ``min_cell`` every count from 1 to min_cell - 1 is null."""
        return _suppress_counts(self._json(), self.min_cell)

    def _json(self) -> dict[str, Any]:
        return {
            "night": self.night,
            "night_run": self.night_run,
            "fatal_checks": self.fatal_checks,
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


def _order(
    paths: list[Path], limits: Limits
) -> list[tuple[Path, str | None, dt.datetime | None, str | None]]:
    """(path, site, exported_at, problem) sorted per site by exported_at; unreadable manifests
    first (they are rejected without a load)."""
    items: list[tuple[Path, str | None, dt.datetime | None, str | None]] = []
    for p in paths:
        try:
            with Bundle(p, limits) as b:
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


def _study(engine: Engine, name: str) -> Any:
    from registry.reports.inputs import study_report

    return study_report(engine, name)


# integers in the night's JSON that count no patients or rows
NOT_COUNTS = frozenset({"exit_code", "run_id", "night_run", "bundles_taken", "bundles_refused"})


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
        g: {
            "n": v["n"] if isinstance(v["n"], int) else None,  # hidden (small or protected): null
            "median_os_2l_months": v["endpoints"].get("os_2l", {}).get("median_months"),
        }
        for g, v in data["groups"].items()
    }


def _move(path: Path, area: Path, reason: str | None = None) -> str:
    area.mkdir(parents=True, exist_ok=True)
    target = area / path.name
    if target.exists():  # a name delivered twice the same night: keep both
        target = area / f"{path.stem}-{dt.datetime.now(dt.UTC).strftime('%H%M%S%f')}{path.suffix}"
    shutil.move(str(path), target)
    area.chmod(0o700)
    _private(target)  # a delivery holds patient data: the registry's account only (0700 / 0600)
    if reason is not None:
        note = area / f"{target.name}.reason.txt"
        note.write_text(reason + "\n", encoding="utf-8")
        note.chmod(0o600)
    return str(target)


def _private(path: Path) -> None:
    if path.is_dir():
        path.chmod(0o700)
        for p in path.rglob("*"):
            p.chmod(0o700 if p.is_dir() else 0o600)
    elif path.exists():
        path.chmod(0o600)


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
    resources: Resources | None = None,
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
    resources
        Worker processes and bundle limits (``Settings.resources``; None: the defaults).

    Returns
    -------
    NightResult
        Every bundle's outcome, what changed, the reports written; ``exit_code`` 0 or 65.
    """
    from registry.derive.run import derive_pending

    today = (night or dt.datetime.now(dt.UTC).date()).isoformat()
    result = NightResult(today, min_cell=min_cell)
    with inbox_lock(inbox):
        with engine.connect() as conn:
            check_key(conn, key)  # a wrong key is the night's problem (78), not the bundles'
        state = NightState(inbox)
        resumed = state.resume()
        if resumed is not None:  # the last night died after taking some bundles: finish it
            before, record = resumed
            studies_before = record["studies_before"]
            result.bundles = [BundleOutcome(**b) for b in record["bundles"]]
            log("resumed", {"bundles_taken_before": len(result.bundles)})
        else:
            before = snapshot(engine)
            studies_before = (
                {name: _groups_or_none(engine, name, min_cell) for name in REPORTS} if before.patients else {}
            )
            state.start(before, {"studies_before": studies_before, "bundles": []})
        res = resources or Resources()
        for path, site, _exported, problem in _order(waiting_bundles(inbox), Limits.of(res.limits)):
            outcome = _take(engine, inbox, today, path, (site, problem), key, res)
            result.bundles.append(outcome)
            state.save({"studies_before": studies_before, "bundles": [asdict(b) for b in result.bundles]})
            log("bundle", {k: v for k, v in asdict(outcome).items() if k != "moved_to"})
        derived = derive_pending(engine, workers=res.derive_workers)
        log("derived", {"patients": derived.patients, "rules_version": derived.rules_version})
        runs = [b.run_id for b in result.bundles if b.run_id is not None and b.status == RunStatus.SUCCEEDED]
        gross = gross_changes(before, snapshot(engine), touched_patients(engine, runs))
        folder = None
        if reports_dir is not None:
            folder = reports_dir / today
            folder.mkdir(parents=True, exist_ok=True)
            result.night_run = _night_run(folder)
        quality = _quality(engine, dq_thresholds)
        result.fatal_checks = quality.pop("fatal")
        studies_after = _write_reports(engine, result, gross, folder, min_cell, log)
        _quality_page(engine, folder, quality, min_cell, result)
        result.changes = {
            "bundles_taken": sum(b.status == RunStatus.SUCCEEDED for b in result.bundles),
            "bundles_refused": sum(b.status != RunStatus.SUCCEEDED for b in result.bundles),
            **gross,
            "quarantined_by_file": _quarantined_by_file(result.bundles),
            "studies": {
                name: {"before": studies_before.get(name), "after": studies_after.get(name)}
                for name in REPORTS
            },
            "data_quality": quality,
        }
        if folder is not None:
            import json

            name = "changes.json" if result.night_run == 1 else f"changes-{result.night_run}.json"
            changes = folder / name
            changes.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n", encoding="utf-8")
            result.reports.append(str(changes))
            share_tree(folder, report_group)
            _keep_last(reports_dir, keep_nights)  # type: ignore[arg-type]
        state.clear()  # the night is complete: the next one starts from here
    return result


def _take(
    engine: Engine,
    inbox: Path,
    today: str,
    path: Path,
    found: tuple[str | None, str | None],
    key: bytes,
    resources: Resources,
) -> BundleOutcome:
    """Load one waiting bundle (without deriving) and move it to processed/ or rejected/;
    ``found`` is its site and the problem its manifest had, if any."""
    site, problem = found
    outcome = BundleOutcome(path.name, site, RunStatus.REFUSED)
    if problem is not None:
        outcome.message = problem
    else:
        try:
            s = run_bundle(engine, path, key, derive=False, resources=resources)
        except (LockHeld, Interrupted):
            raise  # the night's problem, not the bundle's: it stays in the inbox
        except RegistryError as exc:
            outcome.message = exc.message
        else:
            outcome.status = s.status
            outcome.message = s.message
            outcome.run_id = s.run_id
            outcome.read = sum(f.read for f in s.files.values())
            outcome.loaded = sum(f.loaded for f in s.files.values())
            outcome.quarantined = s.quarantined
            outcome.quarantined_by_file = {n: f.quarantined for n, f in s.files.items() if f.quarantined}
            outcome.retired = sum(f.retired for f in s.files.values())
    if outcome.status == RunStatus.SUCCEEDED:
        outcome.moved_to = _move(path, inbox / "processed" / today)
    else:
        outcome.moved_to = _move(path, inbox / "rejected" / today, outcome.message)
    return outcome


def _quarantined_by_file(bundles: list[BundleOutcome]) -> dict[str, int]:
    out: dict[str, int] = {}
    for b in bundles:
        for name, n in b.quarantined_by_file.items():
            out[name] = out.get(name, 0) + n
    return out


def _night_run(folder: Path) -> int:
    """1 for the night's first run; a same-day re-run is 2, 3, ... (its record goes beside the
    first, never over it)."""
    if not (folder / "changes.json").exists():
        return 1
    taken = {p.stem.removeprefix("changes-") for p in folder.glob("changes-*.json")}
    n = 2
    while str(n) in taken:
        n += 1
    return n


# how the reports' "since the last night" box names the gross counts
NIGHT_LABELS = {
    "patients_added": "patients added",
    "patients_changed": "patients changed",
    "patients_retired": "patients retired",
    "deaths_added": "deaths added",
    "deaths_removed": "deaths removed",
    "relapses_added": "relapses added",
    "relapses_removed": "relapses removed",
    "second_lines_added": "second lines added",
    "second_lines_removed": "second lines removed",
}


def _night_warning(result: NightResult) -> str | None:
    if not result.fatal_checks:
        return None
    return (
        f"Tonight's data-quality checks failed ({', '.join(result.fatal_checks)}, severity fatal): "
        "results of this night should not be trusted for studies until the site's export is fixed; "
        "see data-quality.html."
    )


def _write_reports(
    engine: Engine,
    result: NightResult,
    gross: dict[str, int],
    folder: Path | None,
    min_cell: int | None,
    log: Log,
) -> dict[str, Any]:
    """The night's study and outcomes reports (a failed fatal check is said at the top of each).
    Returns each study's groups as released."""
    from registry.reports.render import to_html, to_json
    from registry.reports.suppress import released

    counts = {label: gross[k] for k, label in NIGHT_LABELS.items()}
    warning = _night_warning(result)
    studies_after: dict[str, Any] = {}
    for name in REPORTS:

        def study_pages(name: str = name) -> dict[str, str]:
            report = _study(engine, name)
            # a short summary at the top of the page (counts go through the small-cell rule)
            report.data["since_last_night"] = {"night": result.night, "counts": dict(counts)}
            if warning:
                report.data["warnings"] = [warning, *report.data.get("warnings", [])]
            data = released(report.data, min_cell)  # once, for the pages and the night's record
            studies_after[name] = _groups(data)
            return {"html": to_html(data), "json": to_json(data)}

        _write_report(name, study_pages, folder, result, log)
    _write_report(OUTCOMES, lambda: _outcome_pages(engine, min_cell, warning), folder, result, log)
    return studies_after


def _outcome_pages(engine: Engine, min_cell: int | None, warning: str | None = None) -> dict[str, str]:
    """The transplant-outcomes report of the night, HTML and JSON."""
    from registry.reports.inputs import outcomes_report
    from registry.reports.outcomes import release_outcomes
    from registry.reports.outcomes_render import render_outcomes

    report = outcomes_report(engine)
    if warning:
        report.data["warnings"] = [warning, *report.data.get("warnings", [])]
    data = release_outcomes(report.data, min_cell)
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


def _quality(engine: Engine, overrides: dict[str, float] | None) -> dict[str, Any]:
    """Run the data-quality checks: the failures (the fatal ones apart), the diff with the
    previous run."""
    from registry.quality.checks import CheckSeverity
    from registry.quality.run import FAILED, diff, previous_run_ids, run_checks

    run_id, results = run_checks(engine, overrides)
    previous = [r for r in previous_run_ids(engine, 2) if r != run_id]
    changes = diff(engine, previous[-1], run_id, overrides) if previous else None
    failed = [r for r in results if r.status == FAILED]
    return {
        "run_id": run_id,
        "failed": [r.check_id for r in failed],
        "fatal": [r.check_id for r in failed if r.severity == CheckSeverity.FATAL],
        "new": changes["new"] if changes else [],
        "resolved": changes["resolved"] if changes else [],
        "persisting": changes["persisting"] if changes else [],
        "_results": results,
        "_diff": changes,
    }


def _quality_page(
    engine: Engine,
    folder: Path | None,
    quality: dict[str, Any],
    min_cell: int | None,
    result: NightResult,
) -> None:
    """The night's data-quality page (with a report folder); drops the raw results from
    ``quality``, which goes into the night's record."""
    from registry.reports.quality import quality_html, trends

    results, changes = quality.pop("_results"), quality.pop("_diff")
    if folder is None:
        return
    page = folder / "data-quality.html"
    page.write_text(
        quality_html(quality["run_id"], results, trends(engine), changes, min_cell), encoding="utf-8"
    )
    result.reports.append(str(page))


def _keep_last(reports_dir: Path, nights: int) -> None:
    folders = sorted(
        p for p in reports_dir.iterdir() if p.is_dir() and len(p.name) == 10 and p.name[4] == "-"
    )
    for old in folders[:-nights] if nights > 0 else []:
        shutil.rmtree(old)
