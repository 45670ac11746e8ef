"""Compile a cohort definition into one SQL query for SQLite or PostgreSQL.

The query yields one row per current patient with: the inclusion-step flags, the group, the
dates endpoints need, and ``<endpoint>_days`` / ``<endpoint>_event`` — all set-based, no
per-patient Python. Date arithmetic is the only dialect-specific part (``_days``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from registry.cohorts.definition import CohortDefinition, Endpoint
from registry.cohorts.frames import as_dates, read_frame
from registry.core.errors import DefinitionError
from registry.db.views import describe_view, year_of


def _days(dialect: str, later: str, earlier: str) -> str:
    if dialect == "sqlite":
        return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"
    return f"({later} - {earlier})"


def _least(a: str, b: str) -> str:
    return f"CASE WHEN {a} IS NULL THEN {b} WHEN {b} IS NULL THEN {a} WHEN {a} < {b} THEN {a} ELSE {b} END"


def _date_literal(dialect: str, d: dt.date) -> str:
    return f"'{d.isoformat()}'" if dialect == "sqlite" else f"DATE '{d.isoformat()}'"


class DrugColumns(NamedTuple):
    """The per-drug facts a cohort declaring a drug gets, by column name (read from the
    derivation's generic per-drug tables, line_drugs and relapse_refractoriness)."""

    maintenance: str  # <drug>_maintenance
    l2: str  # l2_<drug>
    refractory: str  # relapse_<drug>_refractory
    free_days: str  # relapse_<drug>_free_days


def drug_column_stem(drug: str) -> str:
    return drug.replace(" ", "_").replace("-", "_")


def drug_columns(drug: str) -> DrugColumns:
    c = drug_column_stem(drug)
    return DrugColumns(f"{c}_maintenance", f"l2_{c}", f"relapse_{c}_refractory", f"relapse_{c}_free_days")


def drug_descriptions(drug: str) -> dict[str, str]:
    """Each per-drug column of ``drug`` with its description (the analysts' view)."""
    cols = drug_columns(drug)
    return {
        cols.maintenance: f"line-1 maintenance contained {drug}",
        cols.l2: f"the second line's first regimen contains {drug}",
        cols.refractory: f"refractory to {drug} at the first relapse after transplant",
        cols.free_days: f"days from the last {drug} to that relapse (0 if running; null: never)",
    }


def _drug_facts_sql(drugs: tuple[str, ...]) -> tuple[str, str, str]:
    """The per-drug parts of the base query: (CTEs, columns, joins). Each drug's line facts are
    grouped by patient once and its relapse facts read once, then joined (no correlated
    subquery: SQLite would run one per patient)."""
    ctes, columns, joins = [], [], []
    for i, drug in enumerate(drugs):
        cols = drug_columns(drug)
        named = f"JOIN drugs dg ON dg.drug_id = x.drug_id AND dg.generic_name = '{drug}'"
        ctes.append(
            f"""ld{i} AS (
        SELECT x.patient_key,
               MAX(CASE WHEN x.line_number = 1 AND x.maintenance = TRUE THEN 1 ELSE 0 END) AS m,
               MAX(CASE WHEN x.line_number = 2 AND x.first_regimen = TRUE THEN 1 ELSE 0 END) AS l2
        FROM line_drugs x {named} GROUP BY x.patient_key
    ),
    rr{i} AS (
        SELECT x.relapse_id, x.refractory, x.free_interval_days FROM relapse_refractoriness x {named}
    ),"""
        )
        columns += [
            f"CASE WHEN ld{i}.m = 1 THEN TRUE ELSE FALSE END AS {cols.maintenance}",
            f"CASE WHEN ld{i}.l2 = 1 THEN TRUE ELSE FALSE END AS {cols.l2}",
            f"CASE WHEN r.relapse_id IS NOT NULL THEN COALESCE(rr{i}.refractory, FALSE) END "
            f"AS {cols.refractory}",
            f"rr{i}.free_interval_days AS {cols.free_days}",
        ]
        joins += [
            f"LEFT JOIN ld{i} ON ld{i}.patient_key = p.patient_key",
            f"LEFT JOIN rr{i} ON rr{i}.relapse_id = r.relapse_id",
        ]
    return (
        "".join(f"\n    {c}" for c in ctes),
        "".join(f",\n               {c}" for c in columns),
        "".join(f"\n        {j}" for j in joins),
    )


def base_sql(dialect: str, as_of: dt.date | None = None, drugs: tuple[str, ...] = ()) -> str:
    """Per-patient facts every cohort condition and endpoint can use, with the per-drug facts
    of ``drugs`` (generic names: ``drug_columns``)."""
    drug_ctes, drug_columns_sql, drug_joins = _drug_facts_sql(drugs)
    cutoff = (
        _date_literal(dialect, as_of) if as_of else "s.last_data_cutoff"
    )  # as_of caps the view at a date; otherwise each site's own cutoff
    return f"""
    WITH
    -- the latest record date is the derivation's (patient_summaries): grouping every
    -- treatment, event and transplant here was the largest part of a cohort read{drug_ctes}
    b0 AS (
        SELECT p.patient_key, p.site_code, p.sex, p.birth_date, p.iss_stage,
               p.cytogenetic_risk, {cutoff} AS cutoff,
               ps.index_transplant_date, ps.relapse_date, ps.l2_start, ps.l2_first_regimen,
               ps.l2_start_rule, ps.l2_progression_date, ps.maintenance_agents,
               ps.maintenance_start, ps.maintenance_end, ps.maintenance_stop_reason,
               f.death_date, f.last_contact_date, ps.last_record_date,
               l1.start_date AS l1_start, l1.best_response AS l1_best_response,
               l1.response_date AS l1_response_date, l2.best_response AS l2_best_response,
               -- the day-100 response the laboratory series gives, else the one recorded
               COALESCE(ps.day100_response, tx.response_day100) AS day100_response,
               CASE WHEN ps.day100_response IS NOT NULL THEN 'labs'
                    WHEN tx.response_day100 IS NOT NULL THEN 'recorded' END AS day100_basis{drug_columns_sql}
        FROM patients p
        JOIN sites s ON s.site_code = p.site_code
        JOIN patient_summaries ps ON ps.patient_key = p.patient_key
        LEFT JOIN follow_up f ON f.patient_key = p.patient_key AND f.is_current = TRUE
        LEFT JOIN relapses r ON r.patient_key = p.patient_key AND r.is_first_after_index = TRUE
        LEFT JOIN lines_of_therapy l1 ON l1.patient_key = p.patient_key AND l1.line_number = 1
        LEFT JOIN lines_of_therapy l2 ON l2.patient_key = p.patient_key AND l2.line_number = 2
        LEFT JOIN transplants tx ON tx.transplant_key = ps.index_transplant_key{drug_joins}
        WHERE p.is_current = TRUE
    ),
    -- MATERIALIZED: computed once. Inlined, each use of a column of b copied its correlated
    -- subquery (24 copies in the lenalidomide cohort; 77 s against 19 s at 100,000 patients
    -- on SQLite)
    b AS MATERIALIZED (
        SELECT b0.*,
          CASE WHEN death_date IS NOT NULL AND death_date <= cutoff THEN 1 ELSE 0 END AS dead,
          {_least("COALESCE(last_contact_date, last_record_date)", "cutoff")} AS end_fu,
          -- the derivation's progression episodes (r3): never a record of the episode that
          -- started the 2nd line, dated by the episode's first record
          CASE WHEN l2_progression_date <= cutoff THEN l2_progression_date END AS progression_after_l2,
          CASE WHEN relapse_date <= cutoff THEN relapse_date END AS relapse,
          -- duration of response and time to next treatment (line 1)
          CASE WHEN l1_response_date <= cutoff THEN l1_response_date END AS l1_response,
          CASE WHEN relapse_date <= cutoff AND relapse_date >= l1_response_date THEN relapse_date END
            AS progression_after_response,
          CASE WHEN l2_start <= cutoff THEN l2_start END AS next_treatment
        FROM b0
    )
    """


def _event_date(events: tuple[str, ...]) -> str:
    candidates = ["CASE WHEN dead = 1 THEN death_date END" if ev == "death" else ev for ev in events]
    date = candidates[0]
    for c in candidates[1:]:
        date = _least(date, c)
    return date


def _endpoint_columns(dialect: str, e: Endpoint) -> str:
    event_date = _event_date(e.events)
    first = event_date if not e.competing else _least(event_date, _event_date(e.competing))
    stop = f"COALESCE({first}, end_fu)"
    days = _days(dialect, stop, e.origin)
    out = f"CASE WHEN {e.origin} IS NULL THEN NULL WHEN {days} < 0 THEN 0 ELSE {days} END AS {e.name}_days,\n"
    if not e.competing:
        return out + (
            f"CASE WHEN {e.origin} IS NULL THEN NULL WHEN {event_date} IS NOT NULL THEN 1 ELSE 0 END "
            f"AS {e.name}_event"
        )
    competing = _event_date(e.competing)
    # the event on the same day as the competing one counts as the event (relapse before death)
    return out + (
        f"CASE WHEN {e.origin} IS NULL THEN NULL "
        f"WHEN {event_date} IS NOT NULL AND ({competing} IS NULL OR {event_date} <= {competing}) THEN 1 "
        f"WHEN {competing} IS NOT NULL THEN 2 ELSE 0 END AS {e.name}_status"
    )


# the per-patient facts every cohort row carries, before its step flags, group and endpoints
EXPORT_COLUMNS = [
    "patient_key",
    "site_code",
    "cutoff",
    "sex",
    "birth_date",
    "iss_stage",
    "cytogenetic_risk",
    "index_transplant_date",
    "relapse_date",
    "l2_start",
    "l2_first_regimen",
    "maintenance_agents",
    "maintenance_start",
    "maintenance_end",
    "maintenance_stop_reason",
    "death_date",
    "last_contact_date",
    "l1_start",
    "l1_best_response",
    "l1_response_date",
    "l2_best_response",
    "day100_response",
    "day100_basis",
]


def export_columns(defn: CohortDefinition) -> list[str]:
    """The per-patient facts of the cohort's rows: every cohort's, then its drugs' facts."""
    return EXPORT_COLUMNS + [c for drug in defn.drugs for c in drug_columns(drug)]


def compile_cohort(defn: CohortDefinition, dialect: str, as_of: dt.date | None = None) -> str:
    """SELECT of every current patient with step flags, group and endpoints."""
    flags = []
    acc = "1=1"
    for i, step in enumerate(defn.steps, start=1):
        acc = f"{acc} AND ({step.condition})"
        flags.append(f"CASE WHEN {acc} THEN 1 ELSE 0 END AS step_{i}")
    groups = " ".join(f"WHEN {g.condition} THEN '{g.name}'" for g in defn.groups)
    endpoints = ",\n".join(_endpoint_columns(dialect, e) for e in defn.endpoints)
    return f"""{base_sql(dialect, as_of, defn.drugs)}
    SELECT {", ".join(export_columns(defn))},
           {", ".join(flags)},
           CASE WHEN {acc} THEN CASE {groups} END END AS "group",
           {endpoints}
    FROM b"""


def analysis_sql(defn: CohortDefinition, dialect: str, as_of: dt.date | None = None) -> str:
    """Only the patients that pass every step (the per-patient analysis table)."""
    last = f"step_{len(defn.steps)}"
    return f"SELECT * FROM ({compile_cohort(defn, dialect, as_of)}) c WHERE {last} = 1"


def view_name(defn: CohortDefinition) -> str:
    """The analysts' view of a cohort: ``cohort_<name>``."""
    return "cohort_" + defn.name.replace("-", "_")


# what the analysts' view shows instead of the export's own columns: the year, never the full
# birth date; ``study_group`` because ``group`` is a reserved word an analyst would have to quote
VIEW_RENAMES = {"birth_date": "birth_year", "group": "study_group"}


EXPORT_DESCRIPTIONS = {
    "patient_key": "the patient's pseudonym",
    "site_code": "the delivering centre",
    "cutoff": "the site's data cutoff (or the --as-of date)",
    "sex": "F, M or U",
    "birth_year": "year of birth (the full date is never shown)",
    "iss_stage": "ISS stage at diagnosis",
    "cytogenetic_risk": "standard, high or unknown",
    "index_transplant_date": "date of the index autologous transplant",
    "relapse_date": "first relapse after the index transplant",
    "l2_start": "start of the second line",
    "l2_first_regimen": "the second line's first regimen (generic names)",
    "maintenance_agents": "maintenance drugs, generic names",
    "maintenance_start": "first day of maintenance",
    "maintenance_end": "last day of maintenance; null when ongoing",
    "maintenance_stop_reason": "why maintenance stopped",
    "death_date": "date of death",
    "last_contact_date": "last contact",
    "l1_start": "start of the first line",
    "l1_best_response": "the first line's best confirmed response (laboratory series, else recorded)",
    "l1_response_date": "the first line's first confirmed partial response or better",
    "l2_best_response": "the second line's best confirmed response",
    "day100_response": "the response at day 100 after the index transplant (labs, else recorded)",
    "day100_basis": "labs or recorded: where day100_response comes from",
}


def view_descriptions(defn: CohortDefinition) -> list[tuple[str, str]]:
    """(column, description) of every column of the cohort's analysts' view, in order."""
    described = dict(EXPORT_DESCRIPTIONS)
    for drug in defn.drugs:
        described.update(drug_descriptions(drug))
    for i, step in enumerate(defn.steps, start=1):
        described[f"step_{i}"] = f"1 when the patient passes steps 1-{i} (step {i}: {step.label})"
    described["study_group"] = "; ".join(f"{g.name} = {g.label}" for g in defn.groups)
    for e in defn.endpoints:
        described[f"{e.name}_days"] = f"{e.label}: days from {e.origin} to the event or censoring"
        described[f"{e.name}_event"] = f"{e.label}: 1 event, 0 censored"
        described[f"{e.name}_status"] = f"{e.label}: 1 the event, 2 a competing event first, 0 censored"
    return [(c, described[c]) for c in view_columns(defn)]


def view_columns(defn: CohortDefinition) -> list[str]:
    """The columns of the cohort's analysts' view, in order."""
    cols = [VIEW_RENAMES.get(c, c) for c in export_columns(defn)]
    cols += [f"step_{i}" for i in range(1, len(defn.steps) + 1)]
    cols.append("study_group")
    cols += [c for e in defn.endpoints for c in (f"{e.name}_days", e.outcome_column)]
    return cols


def create_view(conn: Connection, defn: CohortDefinition) -> str:
    """(Re)create the analysts' view of the cohort (each site's own cutoff): the patients that
    pass every step, with the birth year instead of the birth date and ``study_group``."""
    dialect = conn.dialect.name
    select = []
    for col in view_columns(defn):
        if col == "birth_year":
            select.append(f"{year_of(dialect, 'c.birth_date')} AS birth_year")
        elif col == "study_group":
            select.append('c."group" AS study_group')
        else:
            select.append(f"c.{col}")
    name = view_name(defn)
    conn.execute(text(f"DROP VIEW IF EXISTS {name}"))
    conn.execute(
        text(f"CREATE VIEW {name} AS SELECT {', '.join(select)} FROM ({analysis_sql(defn, dialect)}) c")
    )
    describe_view(conn, name, defn.title, view_descriptions(defn))  # like the other views
    return name


def create_builtin_views(conn: Connection) -> list[str]:
    """(Re)create the view of every built-in cohort (``registry db upgrade`` and ``registry
    cohort views`` both call this, so the views follow the definitions and the schema)."""
    from registry.cohorts.definition import builtin_names, load_definition

    return [create_view(conn, load_definition(name)) for name in builtin_names()]


def find_broken_condition(engine: Engine, defn: CohortDefinition) -> DefinitionError | None:
    """Run each step's and group's condition alone; the first that the database refuses, as an
    error naming it (None if every condition runs)."""
    parts = [(f"step {i} ({s.label})", s.condition) for i, s in enumerate(defn.steps, start=1)]
    parts += [(f"group {g.name}", g.condition) for g in defn.groups]
    for where, condition in parts:
        with engine.connect() as conn:  # a fresh connection each: a failed statement aborts it
            try:
                base = base_sql(conn.dialect.name, drugs=defn.drugs)
                conn.execute(text(f"{base} SELECT 1 FROM b WHERE ({condition}) LIMIT 0"))
            except DBAPIError as exc:
                first = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
                return DefinitionError(
                    f"cohort {defn.name}, {where}: condition {condition!r} does not run: {first}",
                    hint="conditions are SQL over the columns listed at the top of the definition",
                )
    return None


def _run_or_explain(engine: Engine, defn: CohortDefinition, query: Callable[[], Any]) -> Any:
    try:
        return query()
    except DBAPIError:
        broken = find_broken_condition(engine, defn)
        if broken is not None:
            raise broken from None
        raise


# facts Table 1 describes besides the cohort's own columns: diagnosis, staging, FISH, the index
# transplant's response and tandem, the first induction regimen and the 2nd line's drug classes
# (each line's first regimen of a phase found by one grouping of the regimens, not a lookup a
# patient; a regimen's number is its order within the patient, so one row a line)
BASELINE_SQL = """
SELECT p.patient_key, p.diagnosis_date, p.riss_stage, p.ldh_elevated, p.del17p, p.t_4_14,
       p.t_14_16, p.gain_1q, t.response_day100, ps.tandem_transplant_date,
       ind.acronym AS induction_acronym, ind.backbone AS induction_backbone,
       l2.backbone AS l2_backbone
FROM patients p
JOIN patient_summaries ps ON ps.patient_key = p.patient_key
LEFT JOIN transplants t ON t.transplant_key = ps.index_transplant_key
LEFT JOIN lines_of_therapy l1 ON l1.patient_key = p.patient_key AND l1.line_number = 1
LEFT JOIN (
    SELECT line_id, MIN(regimen_number) AS n FROM regimens WHERE phase = 'induction' GROUP BY line_id
) ind1 ON ind1.line_id = l1.line_id
LEFT JOIN regimens ind ON ind.line_id = ind1.line_id AND ind.regimen_number = ind1.n
LEFT JOIN (
    SELECT line_id, MIN(regimen_number) AS n FROM regimens WHERE phase = 'salvage' GROUP BY line_id
) l21 ON l21.line_id = ps.l2_line_id
LEFT JOIN regimens l2 ON l2.line_id = l21.line_id AND l2.regimen_number = l21.n
WHERE p.is_current = TRUE
"""


BASELINE_COLUMNS = (
    "diagnosis_date",
    "riss_stage",
    "ldh_elevated",
    "del17p",
    "t_4_14",
    "t_14_16",
    "gain_1q",
    "response_day100",
    "tandem_transplant_date",
    "induction_acronym",
    "induction_backbone",
    "l2_backbone",
)
DATE_COLUMNS = (
    "cutoff",
    "birth_date",
    "index_transplant_date",
    "relapse_date",
    "l2_start",
    "maintenance_start",
    "maintenance_end",
    "death_date",
    "last_contact_date",
)
BASELINE_DATES = ("diagnosis_date", "tandem_transplant_date")


@dataclass(frozen=True)
class Reach:
    """How far the current patients got through a cohort's steps: what a report says of the
    patients it does not analyse (the attrition, the earliest data cutoff), without their rows."""

    patients: int
    passed: tuple[int, ...]  # for each step i: the patients passing steps 1..i
    earliest_cutoff: dt.date | None

    def __add__(self, other: Reach) -> Reach:
        cutoffs = [c for c in (self.earliest_cutoff, other.earliest_cutoff) if c is not None]
        return Reach(
            self.patients + other.patients,
            tuple(a + b for a, b in zip(self.passed, other.passed, strict=True)),
            min(cutoffs) if cutoffs else None,
        )


def reach_of(cohort: pd.DataFrame, defn: CohortDefinition) -> Reach:
    """The reach of a cohort frame of every current patient (``read_cohort``)."""
    cutoffs = cohort["cutoff"].dropna()
    return Reach(
        len(cohort),
        tuple(int(cohort[f"step_{i}"].sum()) for i in range(1, len(defn.steps) + 1)),
        min(cutoffs) if len(cutoffs) else None,
    )


def _cohort_sql(
    defn: CohortDefinition, dialect: str, as_of: dt.date | None, baseline: bool, columns: list[str] | None
) -> tuple[str, tuple[str, ...]]:
    """The cohort's query (with the baseline facts joined in the database: one read, a million
    patients' rows never held twice) and its date columns; ``columns``: only these, with the
    key, the step flags and the cutoff."""
    sql = compile_cohort(defn, dialect, as_of)
    facts: tuple[str, ...] = BASELINE_COLUMNS if baseline else ()
    if columns is not None:
        needed = ["patient_key", "cutoff", *(f"step_{i}" for i in range(1, len(defn.steps) + 1))]
        wanted = list(dict.fromkeys([*needed, *columns]))
        facts = tuple(c for c in wanted if c in facts)
        select = ", ".join(f'c."{c}"' if c == "group" else f"c.{c}" for c in wanted if c not in facts)
    else:
        select = "c.*"
    if facts:
        select += "".join(f", bf.{c}" for c in facts)
        join = f" LEFT JOIN ({BASELINE_SQL}) bf ON bf.patient_key = c.patient_key"
    else:
        join = ""
    return f"SELECT {select} FROM ({sql}) c{join}", (*DATE_COLUMNS, *BASELINE_DATES)


def _typed(df: pd.DataFrame, defn: CohortDefinition) -> pd.DataFrame:
    for drug in defn.drugs:
        cols = drug_columns(drug)
        for col in (cols.maintenance, cols.l2, cols.refractory):
            if col in df:
                df[col] = df[col].astype("boolean")
        if cols.free_days in df:
            df[cols.free_days] = df[cols.free_days].astype("Int64")
    if "ldh_elevated" in df:
        df["ldh_elevated"] = df["ldh_elevated"].astype("boolean")
    return df


def read_cohort(
    engine: Engine,
    defn: CohortDefinition,
    as_of: dt.date | None = None,
    *,
    baseline: bool = False,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """Every current patient with step flags (for attrition) and, where defined, endpoints;
    with ``baseline``, also Table 1's facts (``BASELINE_SQL``, joined in the database); ``columns``:
    only those (and the key, the step flags and the cutoff).

    Raises ``DefinitionError`` naming the step or group whose condition the database refuses.
    """
    return _read(engine, defn, as_of, baseline, columns)


def read_analysed(
    engine: Engine,
    defn: CohortDefinition,
    as_of: dt.date | None = None,
    *,
    baseline: bool = False,
    columns: list[str] | None = None,
) -> tuple[pd.DataFrame, Reach]:
    """``read_cohort`` of only the patients that pass every step, with the ``Reach`` of all
    (the rows of the others are counted as they are read, never kept)."""
    last = f"step_{len(defn.steps)}"
    reach = Reach(0, (0,) * len(defn.steps), None)

    def each(chunk: pd.DataFrame) -> pd.DataFrame:
        nonlocal reach
        dated = chunk.assign(cutoff=as_dates(chunk["cutoff"]))
        reach = reach + reach_of(dated, defn)
        return chunk[chunk[last] == 1]

    df = _read(engine, defn, as_of, baseline, columns, each)
    return df, reach


def _read(
    engine: Engine,
    defn: CohortDefinition,
    as_of: dt.date | None,
    baseline: bool,
    columns: list[str] | None,
    each: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    sql, dates = _cohort_sql(defn, engine.dialect.name, as_of, baseline, columns)
    return _typed(_run_or_explain(engine, defn, lambda: read_frame(engine, sql, dates, each=each)), defn)
