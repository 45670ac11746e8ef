"""The words every report shows for a stored code: endpoints, factor levels, response
categories, stages. One table; a code not in it is shown with its underscores as spaces."""

from __future__ import annotations

LABELS: dict[str, str] = {
    # endpoints
    "os_2l": "OS from the 2nd line",
    "pfs_2l": "2nd PFS (from the 2nd line)",
    "os": "Overall survival",
    "pfs": "Progression-free survival",
    "relapse": "Relapse or progression",
    "nrm": "Non-relapse mortality",
    "crr": "Relapse or progression (competing risks)",
    # factors of the outcomes report
    "age_group": "Age at the transplant",
    "iss_stage": "ISS stage",
    "riss_stage": "R-ISS stage",
    "r2iss_stage": "R2-ISS stage",
    "cytogenetic_risk": "Cytogenetic risk",
    "maintenance": "Maintenance",
    "era": "Transplant era",
    # levels
    "not_tested": "not tested",
    "not_recorded": "not recorded",
    "low_intermediate": "low-intermediate",
    "high_intermediate": "high-intermediate",
}


def human(code: object) -> str:
    """The words for a code (``os_2l`` -> "OS from the 2nd line", ``not_tested`` -> "not tested")."""
    text = str(code)
    return LABELS.get(text, text.replace("_", " "))
