"""The analysts' views: the same names and columns on SQLite and PostgreSQL, current records only,
no lineage, no retired history, no quarantine, and no full birth date (the year only).
``registry db upgrade`` creates them and keeps them current; on PostgreSQL each column carries
its description (``COMMENT ON``), and docs/data-model.md lists them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class View:
    name: str
    description: str
    columns: tuple[tuple[str, str], ...]  # (column, description), in the view's order
    sql: str  # a SELECT with {days(later, earlier)}, {year(date)}, {age(later, earlier)}, {agents()}


def _days(dialect: str, later: str, earlier: str) -> str:
    if dialect == "sqlite":
        return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"
    return f"({later} - {earlier})"


def year_of(dialect: str, date: str) -> str:
    """SQL for the year of a date column, as an integer (what views show instead of a date)."""
    if dialect == "sqlite":
        return f"CAST(substr({date}, 1, 4) AS INTEGER)"
    return f"CAST(EXTRACT(YEAR FROM {date}) AS INTEGER)"


def _age(dialect: str, later: str, earlier: str) -> str:
    days = _days(dialect, later, earlier)
    if dialect == "sqlite":
        return f"ROUND({days} / 365.25, 1)"
    return f"ROUND(CAST({days} / 365.25 AS NUMERIC), 1)"


_LINE_AGENTS_FROM = """FROM regimens g
              JOIN regimen_exposures re ON re.regimen_id = g.regimen_id
              JOIN exposures e ON e.exposure_id = re.exposure_id
              LEFT JOIN drugs d ON d.drug_id = e.drug_id WHERE g.line_id = l.line_id"""
# the drug's generic name, or the normalised recorded name of an unmapped drug whose rows record
# an intent (r3: a blinded trial drug)
_AGENT = "COALESCE(d.generic_name, e.unmapped_drug)"


def _line_agents(dialect: str) -> str:
    """Every drug of a line (generic names, distinct, sorted, joined by ', ')."""
    if dialect == "sqlite":
        return (
            f"(SELECT group_concat(name, ', ') FROM (SELECT DISTINCT {_AGENT} AS name "
            f"{_LINE_AGENTS_FROM} ORDER BY name))"
        )
    return f"(SELECT string_agg(DISTINCT {_AGENT}, ', ' ORDER BY {_AGENT}) {_LINE_AGENTS_FROM})"


VIEWS: tuple[View, ...] = (
    View(
        "v_patients",
        "One row per current patient: demographics at diagnosis, staging, vital status.",
        (
            ("patient_key", "the patient's pseudonym (HMAC of site and source id)"),
            ("site_code", "the delivering centre"),
            ("sex", "F, M or U"),
            ("birth_year", "year of birth (the full date is never shown)"),
            ("age_at_diagnosis", "age at diagnosis in years, one decimal"),
            ("diagnosis_date", "date of the myeloma diagnosis"),
            ("iss_stage", "ISS stage I-III, null when not recorded"),
            ("riss_stage", "R-ISS stage I-III, null when not recorded"),
            (
                "riss_computed",
                "R-ISS I-III computed by the registry from ISS, LDH and FISH; null where they leave it open",
            ),
            ("r2iss_computed", "R2-ISS I-IV computed from ISS, LDH, del(17p), t(4;14) and 1q gain"),
            ("cytogenetic_risk", "high, standard or unknown (from the FISH results)"),
            ("vital_status", "alive or dead at last contact; null without a follow-up row"),
            ("last_contact_date", "last date known alive (or the death date)"),
            ("death_date", "date of death, null when alive"),
            ("cause_of_death", "cause of death as recorded"),
        ),
        """SELECT p.patient_key, p.site_code, p.sex, {year(p.birth_date)} AS birth_year,
           {age(p.diagnosis_date, p.birth_date)} AS age_at_diagnosis, p.diagnosis_date,
           p.iss_stage, p.riss_stage, p.riss_computed, p.r2iss_computed, p.cytogenetic_risk,
           f.vital_status, f.last_contact_date,
           f.death_date, f.cause_of_death
           FROM patients p LEFT JOIN follow_up f ON f.patient_key = p.patient_key AND f.is_current
           WHERE p.is_current""",
    ),
    View(
        "v_follow_up",
        "Last contact and vital status of each current patient who has a follow-up row.",
        (
            ("patient_key", "the patient's pseudonym"),
            ("last_contact_date", "last date known alive (or the death date)"),
            ("vital_status", "alive or dead"),
            ("death_date", "date of death, null when alive"),
            ("cause_of_death", "cause of death as recorded"),
        ),
        """SELECT f.patient_key, f.last_contact_date, f.vital_status, f.death_date, f.cause_of_death
           FROM follow_up f JOIN patients p ON p.patient_key = f.patient_key AND p.is_current
           WHERE f.is_current""",
    ),
    View(
        "v_transplants",
        "Current transplants with their derived role.",
        (
            ("patient_key", "the patient's pseudonym"),
            ("transplant_date", "day 0: the stem-cell infusion"),
            ("transplant_type", "autologous or allogeneic"),
            ("role", "index, tandem, salvage, additional or allogeneic (docs/derivations.md)"),
            ("line_number", "the line of therapy the transplant belongs to"),
            ("conditioning_agent", "conditioning agent as recorded"),
            ("conditioning_dose_mg_m2", "conditioning dose, mg/m2"),
            ("planned_tandem", "recorded as a planned tandem"),
            ("response_before", "IMWG response before conditioning"),
            ("response_day100", "IMWG response at day 100, as recorded"),
            (
                "response_day100_derived",
                "the index transplant's day-100 response judged from the laboratory series (line 1's "
                "assessment nearest day 100, within 30 days); null for other transplants or without a series",
            ),
        ),
        """SELECT t.patient_key, t.transplant_date, t.transplant_type, r.role, l.line_number,
           t.conditioning_agent, t.conditioning_dose_mg_m2, t.planned_tandem, t.response_before,
           t.response_day100, s.day100_response AS response_day100_derived
           FROM transplants t JOIN patients p ON p.patient_key = t.patient_key AND p.is_current
           LEFT JOIN transplant_roles r ON r.transplant_key = t.transplant_key
           LEFT JOIN lines_of_therapy l ON l.line_id = r.line_id
           LEFT JOIN patient_summaries s ON s.patient_key = t.patient_key
                AND s.index_transplant_key = t.transplant_key
           WHERE t.is_current""",
    ),
    View(
        "v_treatments",
        "Current treatment rows with the drug's generic name and class and the line they belong to.",
        (
            ("patient_key", "the patient's pseudonym"),
            ("drug", "generic name (null when the name is not in the vocabulary)"),
            ("drug_class", "IMiD, PI, anti-CD38, ..., steroid, supportive"),
            ("drug_raw", "the name as recorded by the site"),
            ("start_date", "first day of the period"),
            ("end_date", "last day, null when ongoing at the cutoff"),
            ("dose_mg", "dose in mg as recorded"),
            ("intent", "intent as recorded"),
            ("stop_reason", "why it stopped, as recorded"),
            (
                "line_number",
                "the line of therapy the row counts in (null: conditioning, supportive, unmapped)",
            ),
        ),
        """SELECT t.patient_key, d.generic_name AS drug, d.drug_class, t.drug_raw, t.start_date,
           t.end_date, t.dose_mg, t.intent, t.stop_reason,
           (SELECT MIN(l.line_number) FROM exposure_sources es
              JOIN regimen_exposures re ON re.exposure_id = es.exposure_id AND re.continued = FALSE
              JOIN regimens g ON g.regimen_id = re.regimen_id
              JOIN lines_of_therapy l ON l.line_id = g.line_id
            WHERE es.treatment_key = t.treatment_key) AS line_number
           FROM treatments t JOIN patients p ON p.patient_key = t.patient_key AND p.is_current
           LEFT JOIN drugs d ON d.drug_id = t.drug_id
           WHERE t.is_current""",
    ),
    View(
        "v_lines",
        "Lines of therapy: dates, why each started and ended, its first regimen and its agents.",
        (
            ("patient_key", "the patient's pseudonym"),
            ("line_number", "1 for the first line"),
            ("start_date", "first day of the line"),
            ("end_date", "last day (never after the next line starts); null when ongoing"),
            ("end_reason", "a stop reason, progression, next_line or ongoing"),
            (
                "start_rule",
                "first, progression, progression_recorded_later (salvage begun up to 30 days before the "
                "progression was recorded), gap, new_drug or transplant",
            ),
            ("regimen_name", "the line's first regimen (generic names joined by +)"),
            ("agents", "every drug given in the line, generic names"),
            (
                "best_response",
                "best confirmed IMWG response (sCR, CR, VGPR, PR, MR, SD; PD when the line progressed "
                "before any response); null when none was confirmed",
            ),
            ("best_response_date", "the first of the two assessments that confirmed it"),
            (
                "response_basis",
                "labs (judged from the laboratory series), recorded (the response assessments recorded "
                "during the line, used only where the series cannot judge it) or not_evaluable",
            ),
            ("best_response_unconfirmed", "a better category met only at the line's last assessment"),
            ("measurable", "what the line is judged on: serum, urine or flc (comma-separated)"),
        ),
        """SELECT l.patient_key, l.line_number, l.start_date, l.end_date, l.end_reason, l.start_rule,
           (SELECT g.name FROM regimens g WHERE g.line_id = l.line_id
            ORDER BY g.start_date, g.regimen_id LIMIT 1) AS regimen_name,
           {agents()} AS agents, l.best_response, l.best_response_date, l.response_basis,
           l.best_response_unconfirmed, l.measurable
           FROM lines_of_therapy l JOIN patients p ON p.patient_key = l.patient_key AND p.is_current""",
    ),
    View(
        "v_response_assessments",
        "Every assessment of a line's response judged from the laboratory series, with the rule "
        "that decided it.",
        (
            ("patient_key", "the patient's pseudonym"),
            ("line_number", "the line judged"),
            ("assessment_date", "a date with an M-protein, free light chain or immunofixation sample"),
            ("category", "sCR, CR, VGPR, PR, MR, SD or PD"),
            (
                "confirmed",
                "the next assessment met the category or a better one; for PD: the line's "
                "confirmed progression",
            ),
            ("basis", "the rule that decided it, e.g. 'PR: serum -62%'"),
            ("serum_m_protein", "the serum M-protein used, g/dL"),
            ("urine_m_protein", "the urine M-protein used, mg/24h"),
            ("dflc", "the free light chain difference used, mg/L"),
            ("bm_plasma_cells", "the latest marrow plasma cells since the line's start, %"),
        ),
        """SELECT a.patient_key, l.line_number, a.assessment_date, a.category, a.confirmed, a.basis,
           a.serum_m_protein, a.urine_m_protein, a.dflc, a.bm_plasma_cells
           FROM response_assessments a JOIN lines_of_therapy l ON l.line_id = a.line_id
           JOIN patients p ON p.patient_key = a.patient_key AND p.is_current""",
    ),
    View(
        "v_regimens",
        "Regimens within their lines, numbered within the line, with their phase.",
        (
            ("patient_key", "the patient's pseudonym"),
            ("line_number", "the line the regimen belongs to"),
            ("regimen_number", "1 for the line's first regimen"),
            ("phase", "induction, mobilisation, consolidation, maintenance or salvage"),
            ("name", "generic names joined by +"),
            ("acronym", "VRd, KRd, DRd, ... when a known combination; null otherwise"),
            ("backbone", "the drug classes it combines, e.g. PI + IMiD + steroid"),
            ("start_date", "first day"),
            ("end_date", "last day its last non-steroid drug was given; null when ongoing"),
            ("stop_reason", "why it stopped"),
        ),
        """SELECT g.patient_key, l.line_number,
           ROW_NUMBER() OVER (PARTITION BY g.line_id ORDER BY g.start_date, g.regimen_id) AS regimen_number,
           g.phase, g.name, g.acronym, g.backbone, g.start_date, g.end_date, g.stop_reason
           FROM regimens g JOIN lines_of_therapy l ON l.line_id = g.line_id
           JOIN patients p ON p.patient_key = g.patient_key AND p.is_current""",
    ),
    View(
        "v_line_drugs",
        "Each drug given in each line: in the line's first regimen, in its maintenance.",
        (
            ("patient_key", "the patient's pseudonym"),
            ("line_number", "the line"),
            ("drug", "generic name"),
            ("drug_class", "its class in the vocabulary"),
            ("first_regimen", "one of the drugs of the line's first regimen"),
            ("maintenance", "one of the line's maintenance drugs"),
        ),
        """SELECT ld.patient_key, ld.line_number, d.generic_name AS drug, d.drug_class,
           ld.first_regimen, ld.maintenance
           FROM line_drugs ld JOIN drugs d ON d.drug_id = ld.drug_id
           JOIN patients p ON p.patient_key = ld.patient_key AND p.is_current""",
    ),
    View(
        "v_maintenance",
        "Maintenance after the index transplant (line 1), one row per patient who had it.",
        (
            ("patient_key", "the patient's pseudonym"),
            ("agents", "maintenance drugs, generic names"),
            ("start_date", "first day of maintenance"),
            ("end_date", "last day; null when ongoing"),
            ("stop_reason", "why it stopped"),
            ("duration_days", "end - start + 1 in days; null when ongoing"),
        ),
        """SELECT s.patient_key, s.maintenance_agents AS agents, s.maintenance_start AS start_date,
           s.maintenance_end AS end_date, s.maintenance_stop_reason AS stop_reason,
           {days(s.maintenance_end, s.maintenance_start)} + 1 AS duration_days
           FROM patient_summaries s JOIN patients p ON p.patient_key = s.patient_key AND p.is_current
           WHERE s.maintenance = TRUE""",
    ),
    View(
        "v_relapses",
        "Relapse episodes: date, what documents them, their place after the transplant (each drug "
        "at each relapse: v_relapse_drugs).",
        (
            ("patient_key", "the patient's pseudonym"),
            ("relapse_number", "1 for the first documented progression"),
            ("relapse_date", "date of the episode's first record"),
            ("source", "what documents its first record: event, stop_reason or labs"),
            ("after_index_transplant", "dated after the index transplant"),
            ("first_after_index_transplant", "the relapse the studies count from"),
            (
                "event_records",
                "progression or relapse events recorded for the episode (2 or more: recorded again)",
            ),
            (
                "recorded_after_line_start",
                "recorded after the salvage regimen it caused began (that line started before it)",
            ),
            (
                "sources",
                "what documents the episode, comma-separated: event, stop_reason, labs (a confirmed PD "
                "found in the laboratory series)",
            ),
        ),
        """SELECT r.patient_key, r.sequence AS relapse_number, r.relapse_date, r.source,
           r.after_index_transplant, r.is_first_after_index AS first_after_index_transplant,
           r.event_records, r.recorded_after_line_start, r.sources
           FROM relapses r JOIN patients p ON p.patient_key = r.patient_key AND p.is_current""",
    ),
    View(
        "v_relapse_drugs",
        "Each drug given before each relapse, as it stood at the relapse (refractoriness by drug; "
        "by class through drug_class).",
        (
            ("patient_key", "the patient's pseudonym"),
            ("relapse_number", "the relapse (v_relapses)"),
            ("relapse_date", "its date"),
            ("first_after_index_transplant", "the relapse the studies count from"),
            ("drug", "generic name"),
            ("drug_class", "its class in the vocabulary"),
            ("refractory", "progressed on the drug or within 60 days of its end"),
            ("exposure_days", "days on the drug up to the relapse"),
            ("free_interval_days", "days from the drug's last day to the relapse (0 if running)"),
            ("last_dose_mg", "the drug's last recorded dose before the relapse"),
        ),
        """SELECT r.patient_key, r.sequence AS relapse_number, r.relapse_date,
           r.is_first_after_index AS first_after_index_transplant, d.generic_name AS drug, d.drug_class,
           x.refractory, x.exposure_days, x.free_interval_days, x.last_dose_mg
           FROM relapse_refractoriness x JOIN relapses r ON r.relapse_id = x.relapse_id
           JOIN drugs d ON d.drug_id = x.drug_id
           JOIN patients p ON p.patient_key = r.patient_key AND p.is_current""",
    ),
)


def view_sql(view: View, dialect: str) -> str:
    """The view's SELECT for one engine."""

    def sub(match: re.Match[str]) -> str:
        name, args = match.group(1), [a.strip() for a in match.group(2).split(",") if a.strip()]
        if name == "days":
            return _days(dialect, *args)
        if name == "year":
            return year_of(dialect, *args)
        if name == "age":
            return _age(dialect, *args)
        return _line_agents(dialect)

    return re.sub(r"\{(days|year|age|agents)\(([^)]*)\)\}", sub, view.sql)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def describe_view(conn: Connection, name: str, description: str, columns: Sequence[tuple[str, str]]) -> None:
    """On PostgreSQL, comment a view and each of its columns (a no-op on SQLite)."""
    if conn.dialect.name != "postgresql":
        return
    # utility statements take no parameters: quote the text (and double the driver's % sign)
    conn.exec_driver_sql(f"COMMENT ON VIEW {name} IS {_quote(description)}".replace("%", "%%"))
    for column, text_ in columns:
        conn.exec_driver_sql(f"COMMENT ON COLUMN {name}.{column} IS {_quote(text_)}".replace("%", "%%"))


def create_views(conn: Connection) -> list[str]:
    """(Re)create every analysts' view, with its column comments on PostgreSQL."""
    dialect = conn.dialect.name
    for view in VIEWS:
        conn.execute(text(f"DROP VIEW IF EXISTS {view.name}"))
        conn.execute(text(f"CREATE VIEW {view.name} AS {view_sql(view, dialect)}"))
        describe_view(conn, view.name, view.description, view.columns)
    from registry.db.roles import grant_views

    grant_views(conn)  # analysts keep their access to the recreated views
    return [v.name for v in VIEWS]


def drop_views(conn: Connection) -> None:
    """Drop the analysts' views (before migrations change the tables under them; the next
    ``registry db upgrade`` creates them again), the cohorts' views (``cohort_*``) with them."""
    for view in VIEWS:
        conn.execute(text(f"DROP VIEW IF EXISTS {view.name}"))
    if conn.dialect.name == "sqlite":
        catalog = "SELECT name FROM sqlite_master WHERE type = 'view' AND name LIKE 'cohort\\_%' ESCAPE '\\'"
    else:
        catalog = (
            "SELECT viewname FROM pg_views WHERE schemaname = current_schema() AND viewname LIKE 'cohort\\_%'"
        )
    for (name,) in conn.execute(text(catalog)).all():
        conn.execute(text(f'DROP VIEW IF EXISTS "{name}"'))
