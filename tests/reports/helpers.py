"""Cohort frames built by hand, shaped as ``read_cohort`` returns them, for report tests
that need no database."""

from __future__ import annotations

import pandas as pd
from hypothesis import strategies as st

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
                    "sex": "F" if (k // 2) % 2 else "M",
                    "birth_date": pd.Timestamp(f"{1945 + k % 20}-03-01").date(),
                    "iss_stage": ["I", "II", "III"][k % 3],
                    "cytogenetic_risk": ["standard", "high"][(k // 3) % 2],
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


@st.composite
def random_cohort(draw: st.DrawFn) -> pd.DataFrame:
    """A random small cohort frame (0-25 patients per group, random times, events, covariates
    with gaps, and Table 1 facts), every patient passing every step, plus some who do not."""
    sizes = {g.name: draw(st.integers(0, 25)) for g in DEFN.groups}
    frame = cohort_frame(sizes)
    if frame.empty:
        frame = cohort_frame({"G1": 1})
    k = len(frame)
    ints = st.lists(st.integers(1, 4000), min_size=k, max_size=k)
    bits = st.lists(st.integers(0, 1), min_size=k, max_size=k)
    for e in DEFN.endpoints:
        frame[f"{e.name}_days"] = draw(ints)
        frame[f"{e.name}_event"] = draw(bits)
    frame["sex"] = draw(st.lists(st.sampled_from(["F", "M"]), min_size=k, max_size=k))
    frame["iss_stage"] = draw(st.lists(st.sampled_from(["I", "II", "III", None]), min_size=k, max_size=k))
    frame["cytogenetic_risk"] = draw(
        st.lists(st.sampled_from(["standard", "high", "unknown"]), min_size=k, max_size=k)
    )
    frame["riss_stage"] = draw(st.lists(st.sampled_from(["I", "II", "III", None]), min_size=k, max_size=k))
    frame["del17p"] = draw(st.lists(st.sampled_from(["present", "absent", None]), min_size=k, max_size=k))
    frame["maintenance_start"] = pd.Timestamp("2015-04-01").date()
    frame["maintenance_end"] = [None if b else pd.Timestamp("2016-06-01").date() for b in draw(bits)]
    frame["diagnosis_date"] = pd.Timestamp("2014-06-01").date()
    frame["relapse_lenalidomide_free_days"] = [d if d % 3 else None for d in draw(ints)]
    excluded = draw(st.integers(0, 30))
    if excluded:
        out = cohort_frame({"G1": excluded})
        out["patient_key"] = [f"x{i:04d}" for i in range(excluded)]
        out["step_3"] = 0
        out["step_2"] = [i % 2 for i in range(excluded)]
        out["group"] = None
        frame = pd.concat([frame, out], ignore_index=True)
    return frame
