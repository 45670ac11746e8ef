"""The data-quality page of the nightly report set: every check's status, counts and the trend
of its violating percentage over the stored runs. Counts below the release threshold are
never shown (the percentage is)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from registry.db.models import DqResult
from registry.quality.run import CheckResult
from registry.reports.render import _ENV


def trends(engine: Engine, runs: int = 10) -> dict[str, list[tuple[int | None, int | None]]]:
    """Each check's (violating, denominator) over the last ``runs`` stored runs, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(DqResult.dq_run_id, DqResult.check_id, DqResult.violated, DqResult.denominator).order_by(
                DqResult.dq_run_id
            )
        ).all()
    ids = sorted({r.dq_run_id for r in rows})[-runs:]
    out: dict[str, list[tuple[int | None, int | None]]] = {}
    for r in rows:
        if r.dq_run_id in ids:
            out.setdefault(r.check_id, []).append((r.violated, r.denominator))
    return out


def quality_html(
    run_id: int,
    results: list[CheckResult],
    trend: dict[str, list[tuple[int | None, int | None]]],
    diff: dict[str, Any] | None = None,
    min_cell: int | None = None,
) -> str:
    """The page; with ``min_cell``, counts below it are replaced by words."""

    def small(n: int | None) -> bool:
        return bool(min_cell) and n is not None and 0 < n < min_cell  # type: ignore[operator]

    def cell(n: int | None) -> str:
        if n is None:
            return "–"
        return f"<{min_cell}" if small(n) else str(n)

    def pct(violated: int | None, denominator: int | None) -> str:
        """A percentage, hidden with its small count (it would give the count back)."""
        if violated is None or not denominator or small(violated):
            return "–"
        return f"{100 * violated / denominator:.1f}"

    env = _ENV.overlay()
    env.filters.update(cell=cell)
    env.globals.update(pct=pct)
    return env.get_template("quality.html.j2").render(
        run_id=run_id,
        results=results,
        failed=[r for r in results if r.status == "failed"],
        trend=trend,
        diff=diff,
        min_cell=min_cell,
    )
