"""Run the data-quality checks, store their raw counts, re-apply thresholds, compare runs."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from registry.core.errors import NotFound
from registry.db.models import DqResult, DqRun
from registry.quality.checks import CATALOGUE, CHECKS, Check

PASSED, FAILED, NOT_APPLICABLE, ERROR = "passed", "failed", "not_applicable", "error"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: raw counts, the threshold applied and the status."""

    check_id: str
    category: str
    severity: str
    threshold: float
    violated: int | None
    denominator: int | None
    status: str
    seconds: float = 0.0
    error: str | None = None

    @property
    def pct(self) -> float | None:
        if not self.denominator or self.violated is None:
            return None
        return round(100.0 * self.violated / self.denominator, 4)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pct": self.pct}


def status_of(violated: int | None, denominator: int | None, threshold: float) -> str:
    """passed / failed against ``threshold`` (percent tolerated); not_applicable without rows."""
    if violated is None or denominator is None:
        return ERROR
    if denominator == 0:
        return NOT_APPLICABLE
    return FAILED if 100.0 * violated / denominator > threshold else PASSED


def thresholds(overrides: dict[str, float] | None = None) -> dict[str, float]:
    """Each check's threshold: the catalogue's, or the configuration file's
    ``[quality.thresholds]``; an override for an unknown check is an error."""
    overrides = overrides or {}
    unknown = set(overrides) - set(CHECKS)
    if unknown:
        from registry.core.errors import ConfigError

        raise ConfigError(
            f"[quality.thresholds] names unknown checks {sorted(unknown)}", hint="see `registry dq checks`"
        )
    return {c.check_id: overrides.get(c.check_id, c.threshold) for c in CATALOGUE}


def _run_one(engine: Engine, check: Check, threshold: float) -> CheckResult:
    t = time.perf_counter()
    try:
        with engine.connect() as conn:
            violated, denominator = check.violations(conn)
    except Exception as exc:  # a broken check is reported as such, the others still run
        return CheckResult(
            check.check_id,
            check.category,
            check.severity,
            threshold,
            None,
            None,
            ERROR,
            round(time.perf_counter() - t, 4),
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
        )
    return CheckResult(
        check.check_id,
        check.category,
        check.severity,
        threshold,
        violated,
        denominator,
        status_of(violated, denominator, threshold),
        round(time.perf_counter() - t, 4),
    )


def run_checks(engine: Engine, overrides: dict[str, float] | None = None) -> tuple[int, list[CheckResult]]:
    """Run every check and store the run.

    Parameters
    ----------
    engine
        The registry.
    overrides
        Thresholds from the configuration file, by check id.

    Returns
    -------
    tuple
        The stored run's id and every check's result.
    """
    limits = thresholds(overrides)
    started = dt.datetime.now(dt.UTC)
    results = [_run_one(engine, c, limits[c.check_id]) for c in CATALOGUE]
    with engine.begin() as conn:
        res = conn.execute(insert(DqRun).values(started_at=started, failed=0))
        pk = res.inserted_primary_key
        assert pk is not None
        run_id = int(pk[0])
        conn.execute(
            insert(DqResult),
            [{"dq_run_id": run_id, **{k: v for k, v in asdict(r).items()}} for r in results],
        )
        conn.execute(
            update(DqRun)
            .where(DqRun.dq_run_id == run_id)
            .values(finished_at=dt.datetime.now(dt.UTC), failed=sum(r.status == FAILED for r in results))
        )
    return run_id, results


def stored_results(
    engine: Engine, run_id: int | None = None, overrides: dict[str, float] | None = None
) -> tuple[int, list[CheckResult]]:
    """A stored run's results (default: the latest), with the thresholds in force now
    re-applied to its raw counts."""
    limits = thresholds(overrides)
    with engine.connect() as conn:
        if run_id is None:
            run_id = conn.execute(select(func.max(DqRun.dq_run_id))).scalar()
            if run_id is None:
                raise NotFound("no data-quality run stored yet", hint="run `registry dq run`")
        rows = conn.execute(
            select(DqResult).where(DqResult.dq_run_id == run_id).order_by(DqResult.check_id)
        ).all()
    if not rows:
        raise NotFound(f"no data-quality run {run_id}")
    out = []
    for r in rows:
        limit = limits.get(r.check_id, r.threshold)
        status = r.status if r.status == ERROR else status_of(r.violated, r.denominator, limit)
        out.append(
            CheckResult(
                r.check_id,
                r.category,
                r.severity,
                limit,
                r.violated,
                r.denominator,
                status,
                r.seconds,
                r.error,
            )
        )
    return int(run_id), out


def previous_run_ids(engine: Engine, n: int = 2) -> list[int]:
    """The ids of the last ``n`` stored runs, oldest first."""
    with engine.connect() as conn:
        ids = [
            int(i) for (i,) in conn.execute(select(DqRun.dq_run_id).order_by(DqRun.dq_run_id.desc()).limit(n))
        ]
    return sorted(ids)


def diff(
    engine: Engine,
    run_a: int | None = None,
    run_b: int | None = None,
    overrides: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Compare two runs (default: the last two): new, resolved and persisting failures, and
    each check's change in violating percentage."""
    if run_a is None or run_b is None:
        last = previous_run_ids(engine, 2)
        if len(last) < 2:
            raise NotFound(
                "fewer than two data-quality runs stored", hint="run `registry dq run` again later"
            )
        run_a, run_b = last
    _, a = stored_results(engine, run_a, overrides)
    _, b = stored_results(engine, run_b, overrides)
    before = {r.check_id: r for r in a}
    after = {r.check_id: r for r in b}
    failed_a = {k for k, r in before.items() if r.status == FAILED}
    failed_b = {k for k, r in after.items() if r.status == FAILED}
    changes = []
    for k in sorted(set(before) | set(after)):
        pa = before[k].pct if k in before else None
        pb = after[k].pct if k in after else None
        changes.append(
            {
                "check_id": k,
                "pct_before": pa,
                "pct_after": pb,
                "change": None if pa is None or pb is None else round(pb - pa, 4),
            }
        )
    return {
        "run_a": run_a,
        "run_b": run_b,
        "new": sorted(failed_b - failed_a),
        "resolved": sorted(failed_a - failed_b),
        "persisting": sorted(failed_a & failed_b),
        "changes": changes,
    }


def violating_rows(engine: Engine, check_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The violating records of a check: pseudonymous key, patient, and the load run and source
    row they came from (never a direct identifier)."""
    check = CHECKS.get(check_id)
    if check is None:
        raise NotFound(f"no data-quality check {check_id!r}", hint="see `registry dq checks`")
    if check.rows is None:
        raise NotFound(f"check {check_id} counts records but cannot list them one by one")
    from registry.db.models import EtlRun

    q = check.rows().limit(limit).subquery()
    with engine.connect() as conn:
        rows = conn.execute(
            select(q, EtlRun.site_code, EtlRun.bundle_hash).outerjoin(EtlRun, EtlRun.run_id == q.c.run_id)
        ).all()
    return [
        {
            "record_key": r.record_key,
            "patient_key": r.patient_key,
            "site": r.site_code,
            "file": f"{r.file}.csv",
            "run_id": r.run_id,
            "bundle_sha256": r.bundle_hash,
            "source_row": r.source_row,
        }
        for r in rows
    ]
