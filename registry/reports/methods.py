"""The Methods section of a study report, written from the cohort definition and the derivation
rules with the parameter values the registry's data were derived with (never a fixed text)."""

from __future__ import annotations

import itertools
from typing import Any

from registry.cohorts.definition import CohortDefinition
from registry.core.units import DAYS_PER_MONTH
from registry.derive.params import DEFAULT_PARAMETERS

EVENT_WORDS = {
    "death": "death from any cause",
    "relapse": "the first relapse or progression after the index transplant",
    "progression_after_l2": (
        "the first documented progression episode that began after the start of the 2nd line (not "
        "the one that started it; dated by its first record)"
    ),
}
ORIGIN_WORDS = {"l2_start": "the start of the 2nd line", "index_transplant_date": "the index transplant"}


def methods(
    defn: CohortDefinition, derivation: dict[str, Any] | None, landmark_days: int | None = None
) -> list[dict[str, str]]:
    """Methods as titled paragraphs: data and derivation rules (with their parameter values),
    cohort, groups, endpoints and censoring, statistics, multiplicity."""
    p = dict(DEFAULT_PARAMETERS.to_json())
    rules = "the registry's current rules"
    if derivation is not None:
        p.update(derivation.get("parameters") or {})
        rules = f"rules version {derivation.get('rules_version') or 'unrecorded'}"
    a = defn.analysis
    steps = "; ".join(f"({i}) {s.label.removeprefix('... ')}" for i, s in enumerate(defn.steps, start=1))
    groups = "; ".join(f"{g.name}: {g.label}" for g in defn.groups)
    endpoints = "; ".join(
        f"{e.name} ({e.label}): from {ORIGIN_WORDS.get(e.origin, e.origin)} to "
        + " or ".join(EVENT_WORDS.get(ev, ev) for ev in e.events)
        for e in defn.endpoints
    )
    pairs = len(list(itertools.combinations(defn.groups, 2)))
    tests = pairs + 1
    out = [
        {
            "title": "Lines of therapy",
            "text": (
                f"Lines of therapy, maintenance and relapses were derived from the treatment records "
                f"by the registry ({rules}), following the IMWG definition of a line of therapy. "
                f"Drugs starting within {p['regimen_window_days']} days of a regimen's start belong to "
                f"it; rows of the same drug with gaps of up to {p['drug_gap_days']} days are one "
                f"exposure, and a line whose drugs all stopped longer ago ends. A new line starts at a "
                f"documented progression, a new drug after the first regimen window, or (after the "
                f"index transplant) a later or allogeneic transplant. A second transplant within "
                f"{p['tandem_window_days']} days of the index one ({p['planned_tandem_window_days']} "
                f"days when planned) is a tandem within line 1. Regimens starting within "
                f"{p['maintenance_start_max_days']} days after line 1's last transplant are "
                f"consolidation (two or more non-steroid drugs starting within "
                f"{p['consolidation_start_max_days']} days and lasting at most "
                f"{p['consolidation_max_duration_days']} days) or maintenance; recorded intent wins. "
                f"Melphalan within {p['conditioning_window_days']} days before a transplant is "
                f"conditioning, not a line. A progression while a drug runs or within "
                f"{p['refractory_window_days']} days of its end makes the patient refractory to it; "
                f"progression records within {p['relapse_episode_days']} days of an episode's first "
                f"record are one relapse, and a progression is always such an episode, never a "
                f"single record. A salvage regimen begun up to "
                f"{p.get('progression_lag_days', 30)} days before its progression was recorded (a new "
                f"non-steroid drug, or intent salvage) starts the next line on its own start date, while "
                f"the relapse keeps its documented date. Unmapped drugs whose records state an intent "
                f"(blinded trial drugs) count as non-steroid drugs. Steroids "
                f"({', '.join(p['non_line_classes'])}) never start or split a line; supportive drugs "
                f"are never part of a regimen."
            ),
        },
        {
            "title": "Cohort",
            "text": f"Entry: {defn.entry}. Inclusion steps: {steps}. Each step's exclusions are "
            "listed in the flow diagram with their reason.",
        },
        {
            "title": "Groups",
            "text": f"Groups are defined at {ORIGIN_WORDS.get(defn.baseline, defn.baseline)}: {groups}. "
            + a.groups_note,
        },
        {
            "title": "Endpoints and censoring",
            "text": f"{endpoints}. Time is counted in days and shown in months (days / {DAYS_PER_MONTH}). "
            "Patients without the event are censored at their last contact, capped at the data "
            "cutoff; a death after the cutoff counts as alive at the cutoff; a patient without a "
            "follow-up record is censored at their latest dated record.",
        },
        {
            "title": "Statistics",
            "text": "Kaplan-Meier estimates with pointwise 95% confidence intervals from Greenwood's "
            "variance on the log(-log) scale; medians and their confidence intervals as R's survfit "
            f"reports them; rates at {', '.join(str(m) for m in a.rate_months)} months; median "
            "follow-up by reverse Kaplan-Meier; log-rank tests (R survdiff) across all groups and "
            f"for each pair; Cox proportional-hazards models with Efron ties, {a.reference_group} as "
            "reference, unadjusted and adjusted for "
            + (", ".join(c.label.lower() for c in a.covariates) or "nothing")
            + " (complete cases), with the cox.zph score test of proportional hazards. Table 1 "
            "shows n (%) or median (IQR) and the largest standardised mean difference between "
            "two groups. The numbers agree with R's survival package (tests in the registry).",
        },
        {
            "title": "Multiplicity",
            "text": f"Each endpoint is compared with {tests} log-rank tests (all groups, and "
            f"{pairs} pairs). p-values are not adjusted for multiplicity; with a Bonferroni "
            f"correction a pairwise difference would need p < {0.05 / tests:.4f} for an overall "
            "5% error rate. The pairwise tests are descriptive.",
        },
    ]
    if landmark_days is not None:
        out.append(
            {
                "title": "Landmark analysis",
                "text": f"Landmark at day {landmark_days} after the index transplant "
                f"({landmark_days / DAYS_PER_MONTH:.1f} months): only patients whose 2nd line had "
                "started by the landmark and who were alive, event-free and under follow-up then are "
                "analysed, with time counted from the landmark, so that no group is credited with the "
                "time its patients had to survive to join it (immortal-time bias).",
            }
        )
    return out


def outcomes_methods(
    defn: CohortDefinition, derivation: dict[str, Any] | None, factors: list[str], landmark_days: int
) -> list[dict[str, str]]:
    """Methods of the transplant-outcomes report, from its definition and the derivation in
    force: the data and rules paragraph of the study report, its cohort and endpoints, and the
    statistics this report uses (Kaplan-Meier, competing risks, tests by factor)."""
    study = {m["title"]: m for m in methods(defn, derivation)}
    endpoints = "; ".join(
        f"{e.name} ({e.label}): from {ORIGIN_WORDS.get(e.origin, e.origin)} to "
        + " or ".join(EVENT_WORDS.get(ev, ev) for ev in e.events)
        + (
            f", with {' or '.join(EVENT_WORDS.get(ev, ev) for ev in e.competing)} as the competing event"
            if e.competing
            else ""
        )
        for e in defn.endpoints
    )
    rates = ", ".join(str(m) for m in defn.analysis.rate_months)
    return [
        study["Lines of therapy"],
        study["Cohort"],
        {
            "title": "Endpoints and censoring",
            "text": f"{endpoints}. Time is counted in days and shown in months (days / {DAYS_PER_MONTH}). "
            "Patients without an event are censored at their last contact, capped at the data "
            "cutoff; a relapse and a death on the same day count as the relapse.",
        },
        {
            "title": "Statistics",
            "text": "Overall and progression-free survival: Kaplan-Meier estimates with pointwise 95% "
            "confidence intervals (Greenwood, log(-log) scale), medians as R's survfit reports them, "
            f"rates at {rates} months. Relapse or progression and non-relapse mortality: cumulative "
            "incidence with the other as a competing risk (Aalen-Johansen), Gray's variance and "
            "log(-log) confidence intervals; Kaplan-Meier on relapse with deaths censored would "
            "overstate it. By factor ("
            + (", ".join(f.replace("_", " ") for f in factors) or "none")
            + "): log-rank tests for OS and PFS, Gray's tests for the incidences; a missing value is "
            f"a level of its own. Maintenance is compared from a landmark at day {landmark_days} "
            "(patients alive and progression-free then, by the maintenance started by then), never "
            "from the transplant (immortal-time bias). The numbers agree with R's survival and cmprsk "
            "packages (tests in the registry).",
        },
    ]
