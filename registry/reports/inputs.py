"""What a study report reads from the registry, and the states in which it refuses to run.

``study_report(engine, name, ...)`` is the one way callers (CLI, nightly run, demo) make a study
report from a registry: it refuses (``ReportRefused``, exit 65) when the registry cannot answer
honestly — patients waiting for derivation, a data cutoff (``--as-of``) after the latest data or
before the first transplant, an empty registry — then reads the cohort with the facts Table 1
needs, and adds the provenance (sites, bundles, runs, derivation rules and parameters, software)
and the data-quality step of the flow diagram (rows and patients quarantined).
"""

from __future__ import annotations

import datetime as dt
import platform
from importlib import metadata
from typing import Any

from sqlalchemy import Engine, func, select

from registry.cohorts.definition import CohortDefinition, load_definition
from registry.cohorts.sql import read_analysed
from registry.core.errors import ReportRefused
from registry.db.models import DerivationRun, EtlRun, Patient, Site, SourceFile, Transplant
from registry.derive.run import derivation_status
from registry.reports.methods import methods, outcomes_methods
from registry.reports.study import StudyReport, build_study_report, check_request

SOFTWARE = ("numpy", "pandas", "scipy", "SQLAlchemy", "matplotlib", "Jinja2")


def check_reportable(engine: Engine, as_of: dt.date | None = None) -> None:
    """Refuse (65) a registry state a report would describe wrongly."""
    with engine.connect() as conn:
        patients = conn.execute(
            select(func.count()).select_from(Patient).where(Patient.is_current)
        ).scalar_one()
        if not patients:
            raise ReportRefused(
                "the registry has no patients: a report would describe nothing",
                hint="load a bundle first: `registry etl run BUNDLE`",
            )
        status = derivation_status(conn)
        if status.pending:
            raise ReportRefused(
                f"{status.pending} patients await derivation: their lines of therapy, relapses and "
                "groups are not known yet, so the report would leave them out",
                hint="run `registry derive` (or `registry etl run` without --no-derive), then the report",
            )
        if as_of is None:
            return
        latest = conn.execute(select(func.max(Site.last_data_cutoff))).scalar()
        first = conn.execute(
            select(func.min(Transplant.transplant_date)).where(Transplant.is_current)
        ).scalar()
    if latest is not None and as_of > latest:
        raise ReportRefused(
            f"--as-of {as_of} is after the latest data cutoff ({latest}): the report would claim "
            "follow-up the data do not have",
            hint=f"use a date on or before {latest}, or leave out --as-of (each site's own cutoff)",
        )
    if first is None or as_of < first:
        raise ReportRefused(
            f"--as-of {as_of} is before the first transplant in the registry ({first}): "
            "nobody could be in the cohort",
            hint="use a later date, or leave out --as-of",
        )


def provenance(engine: Engine) -> dict[str, Any]:
    """Where the report's data came from, so a past report can be reproduced: each site with the
    bundle of its latest load (hash, exported_at, cutoff, run), the latest derivation run (rules
    version, parameters) and the software versions."""
    with engine.connect() as conn:
        sites = conn.execute(
            select(Site.site_code, Site.last_data_cutoff, Site.last_exported_at, Site.last_run_id).order_by(
                Site.site_code
            )
        ).all()
        run_ids = [s.last_run_id for s in sites if s.last_run_id is not None]
        runs = (
            {
                r.run_id: r
                for r in conn.execute(
                    select(EtlRun.run_id, EtlRun.bundle_hash, EtlRun.finished_at).where(
                        EtlRun.run_id.in_(run_ids)
                    )
                )
            }
            if run_ids
            else {}
        )
        derivation = conn.execute(
            select(
                DerivationRun.derivation_run_id,
                DerivationRun.rules_version,
                DerivationRun.finished_at,
                DerivationRun.parameters,
            )
            .where(DerivationRun.finished_at.is_not(None))
            .order_by(DerivationRun.derivation_run_id.desc())
            .limit(1)
        ).first()
        dialect = conn.dialect.name
    software = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            software[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - every one is a dependency
            software[name] = "not installed"
    return {
        "database": dialect,
        "sites": [
            {
                "site": s.site_code,
                "data_cutoff": s.last_data_cutoff.isoformat() if s.last_data_cutoff else None,
                "exported_at": s.last_exported_at.isoformat() if s.last_exported_at else None,
                "run_id": s.last_run_id,
                "bundle_sha256": runs[s.last_run_id].bundle_hash if s.last_run_id in runs else None,
                "loaded_at": (
                    runs[s.last_run_id].finished_at.isoformat()
                    if s.last_run_id in runs and runs[s.last_run_id].finished_at
                    else None
                ),
            }
            for s in sites
        ],
        "derivation": None
        if derivation is None
        else {
            "run_id": derivation.derivation_run_id,
            "rules_version": derivation.rules_version,
            "finished_at": derivation.finished_at.isoformat() if derivation.finished_at else None,
            "parameters": derivation.parameters,
        },
        "software": software,
    }


def quarantine_step(engine: Engine) -> dict[str, Any]:
    """The data-quality step of the flow diagram: the rows of each site's last delivery of each
    file (a file skipped as unchanged counts from the run that read it), how many were
    quarantined, and how many patient rows among them."""
    with engine.connect() as conn:
        files = conn.execute(select(SourceFile.site_code, SourceFile.file, SourceFile.run_id)).all()
        runs = (
            {
                r.run_id: r.file_counts or {}
                for r in conn.execute(
                    select(EtlRun.run_id, EtlRun.file_counts).where(
                        EtlRun.run_id.in_({f.run_id for f in files})
                    )
                )
            }
            if files
            else {}
        )
    read = quarantined = patients_read = patients_quarantined = 0
    for f in files:
        counts = runs.get(f.run_id, {}).get(f.file, {})
        read += int(counts.get("read", 0))
        quarantined += int(counts.get("quarantined", 0))
        if f.file == "patients":
            patients_read += int(counts.get("read", 0))
            patients_quarantined += int(counts.get("quarantined", 0))
    return {
        "rows_read": read,
        "rows_quarantined": quarantined,
        "patients_read": patients_read,
        "patients_quarantined": patients_quarantined,
    }


def study_report(
    engine: Engine,
    name_or_defn: str | CohortDefinition,
    *,
    as_of: dt.date | None = None,
    endpoints: list[str] | None = None,
    landmark_days: int | None = None,
    horizon_months: int | None = None,
) -> StudyReport:
    """A study report from the registry, or ``ReportRefused`` (65) naming what to do first.

    Parameters are those of ``build_study_report``; ``name_or_defn`` is a built-in cohort name,
    a definition file or a loaded definition.
    """
    defn = load_definition(name_or_defn) if isinstance(name_or_defn, str) else name_or_defn
    check_request(defn, endpoints, landmark_days)  # 64 before anything is read
    # only the patients analysed, with how far the others got: 78 for a broken definition
    cohort, reach = read_analysed(engine, defn, as_of, baseline=True)
    check_reportable(engine, as_of)
    prov = provenance(engine)
    context = {
        "provenance": prov,
        "data_quality": quarantine_step(engine),
        "methods": methods(defn, prov["derivation"], landmark_days),
    }
    return build_study_report(
        cohort,
        defn,
        as_of=as_of,
        endpoints=endpoints,
        landmark_days=landmark_days,
        horizon_months=horizon_months,
        context=context,
        reach=reach,
    )


def outcomes_report(
    engine: Engine,
    *,
    by: list[str] | None = None,
    as_of: dt.date | None = None,
    landmark_days: int = 180,
) -> Any:
    """The transplant-outcomes report from the registry, or ``ReportRefused`` (65) / ``StudyError``
    (64) as ``study_report``."""
    from registry.reports.outcomes import STRATA, build_outcomes_report, cohort_columns

    defn = load_definition("transplant-outcomes")
    cohort, reach = read_analysed(engine, defn, as_of, baseline=True, columns=cohort_columns(defn))
    check_reportable(engine, as_of)
    prov = provenance(engine)
    factors = by if by is not None else list(STRATA)
    context = {
        "provenance": prov,
        "data_quality": quarantine_step(engine),
        "methods": outcomes_methods(defn, prov["derivation"], factors, landmark_days),
    }
    return build_outcomes_report(
        cohort, defn, by=by, as_of=as_of, landmark_days=landmark_days, context=context, reach=reach
    )
