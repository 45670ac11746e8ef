"""Cohort frames built by hand, shaped as ``read_cohort`` returns them, for report tests
that need no database."""

from __future__ import annotations

import pandas as pd

from registry.cohorts.definition import load_definition

DEFN = load_definition("lenalidomide-relapse")


def cohort_frame(n_per_group: dict[str, int]) -> pd.DataFrame:
    """A cohort frame as read_cohort returns it, every patient passing every step."""
    rows = []
    i = 0
    for group, n in n_per_group.items():
        for k in range(n):
            i += 1
            rows.append(
                {
                    "patient_key": f"p{i:04d}",
                    "site_code": "S",
                    "cutoff": pd.Timestamp("2026-06-30").date(),
                    "sex": "F" if k % 2 else "M",
                    "birth_date": pd.Timestamp("1955-01-01").date(),
                    "iss_stage": ["I", "II", "III"][k % 3],
                    "cytogenetic_risk": ["standard", "high"][k % 2],
                    "index_transplant_date": pd.Timestamp("2015-01-01").date(),
                    "relapse_date": pd.Timestamp("2017-01-01").date(),
                    "l2_start": pd.Timestamp("2017-01-15").date(),
                    "l2_first_regimen": "x",
                    "maintenance_agents": None,
                    "relapse_lenalidomide_refractory": k % 2,
                    "relapse_lenalidomide_free_days": None if k % 2 else 200 + k,
                    "step_1": 1,
                    "step_2": 1,
                    "step_3": 1,
                    "group": group,
                    **{
                        f"{e.name}_{col}": (100 + 37 * k if col == "days" else k % 2)
                        for e in DEFN.endpoints
                        for col in ("days", "event")
                    },
                }
            )
    return pd.DataFrame(rows)
