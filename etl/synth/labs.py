"""A synthetic patient's laboratory series, consistent with the course the generator drew.

Transplanted patients (most of them; some sites deliver no laboratory file for a patient) get
the series a myeloma centre holds: the paraprotein at diagnosis (serum M-protein; urine-only
and light-chain-only disease too), monthly during induction, from day 100 after the transplant
every four months, a rise on the day each relapse is recorded (confirmed by a second sample or
by the salvage regimen), the second line's response and its progression. Units vary by patient
(g/dL or g/L, mg/24h or g/24h, mg/L or mg/dL), values below the limit are written ``<0.1`` or
``not detected``, some patients have an isolated low value, and some complete responses no
marrow (the registry can then only call them VGPR).

The series never contradicts the course: a laboratory progression falls on the day a relapse
was recorded, so every date the truth holds stays right. The truth gains line 1's best response
(``l1_best_response``) where two assessments at the deepest level confirm it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

# line 1's deepest response by kind of disease (category: weight)
TARGETS = {
    "serum": {"sCR": 10, "CR": 15, "VGPR": 35, "PR": 30, "MR": 10},
    "light_chain": {"sCR": 30, "PR": 70},
    "urine": {"VGPR": 40, "PR": 60},
}
SAMPLE_EVERY = 120  # days between samples after the transplant
LABS_SHARE = 0.85  # patients whose site delivers their laboratory series


class _Series:
    def __init__(self, rec: Any, rng: random.Random, date: Callable[[int], str]) -> None:
        self.rec, self.r, self.date = rec, rng, date
        self.n = 0
        self.serum_unit = "g/L" if rng.random() < 0.4 else "g/dL"
        self.urine_unit = "g/24h" if rng.random() < 0.3 else "mg/24h"
        self.flc_unit = "mg/dL" if rng.random() < 0.25 else "mg/L"
        self.names = {
            "serum_m_protein": rng.choice(["serum_m_protein", "SPEP M-spike", "M-spike"]),
            "urine_m_protein": rng.choice(["urine_m_protein", "UPEP 24h"]),
            "flc_kappa": rng.choice(["flc_kappa", "kappa FLC"]),
            "flc_lambda": rng.choice(["flc_lambda", "lambda FLC"]),
            "serum_ife": rng.choice(["serum_ife", "IFE serum"]),
            "urine_ife": rng.choice(["urine_ife", "IFE urine"]),
            "bm_plasma_cells": "bm_plasma_cells",
        }

    def add(self, day: int, test: str, value: str, unit: str = "") -> None:
        self.n += 1
        self.rec.labs.append(
            {
                "lab_id": f"LB-{self.rec.pid}-{self.n:03d}",
                "patient_id": self.rec.pid,
                "sample_date": self.date(day),
                "test": self.names[test],
                "value": value,
                "unit": unit,
            }
        )

    def serum(self, day: int, g_dl: float) -> None:
        if g_dl <= 0:
            below = "<1" if self.serum_unit == "g/L" else "<0.1"
            self.add(day, "serum_m_protein", self.r.choice([below, "not detected"]), self.serum_unit)
        elif self.serum_unit == "g/L":
            self.add(day, "serum_m_protein", f"{g_dl * 10:.1f}", "g/L")
        else:
            self.add(day, "serum_m_protein", f"{g_dl:.2f}", "g/dL")

    def urine(self, day: int, mg: float) -> None:
        if self.urine_unit == "g/24h":
            self.add(day, "urine_m_protein", f"{mg / 1000:.3f}", "g/24h")
        else:
            self.add(day, "urine_m_protein", f"{mg:.0f}", "mg/24h")

    def flc(self, day: int, kappa: float, lam: float) -> None:
        div = 10.0 if self.flc_unit == "mg/dL" else 1.0
        self.add(day, "flc_kappa", f"{kappa / div:.2f}", self.flc_unit)
        self.add(day, "flc_lambda", f"{lam / div:.2f}", self.flc_unit)


def add_lab_series(
    rec: Any,
    course: dict[str, int],
    rng: random.Random,
    date: Callable[[int], str],
    day_of: Callable[[str], int],
) -> None:
    """Write ``rec``'s laboratory rows (and its line 1 truth) from the course's days."""
    if "tx" not in course or rng.random() > LABS_SHARE:
        return
    s = _Series(rec, rng, date)
    patient = rec.patients[0]
    kind = (
        "light_chain" if patient.get("heavy_chain") == "none" else "urine" if rng.random() < 0.08 else "serum"
    )
    kappa_disease = patient.get("light_chain") != "lambda"
    weights = TARGETS[kind]
    target = rng.choices(list(weights), list(weights.values()))[0]
    no_marrow = target == "CR" and rng.random() < 0.25  # a CR without a marrow is judged VGPR at most
    end = min(course["death"] - 1, course["end"])
    diag, ind_start, ind_end = course["diag"], course["ind_start"], course["ind_end"]
    last_tx = course["last_tx"]
    relapse = course.get("relapse")
    l2 = course.get("l2")
    l2_start = day_of(rec.truth["l2_start"]) if rec.truth.get("l2_start") else l2
    lag = course.get("lag", 0)
    # line 1 is sampled until its relapse (with salvage begun before the record: until then)
    stop = end
    if relapse is not None and relapse <= end:
        stop = relapse - 1
    if lag and l2_start is not None:
        stop = min(stop, l2_start - 1)

    # the paraprotein at each level: baseline, induction, the deepest response
    base = {
        "serum": rng.uniform(1.5, 6.0),
        "urine": rng.uniform(600, 3000),
        "light_chain": rng.uniform(400, 3000),
    }[kind]
    uninvolved = rng.uniform(8, 15)

    def level(fraction: float, day: int) -> None:
        """The disease at ``fraction`` of its baseline (0: below the limit)."""
        v = base * fraction * (rng.uniform(0.97, 1.03) if fraction else 1)
        if kind == "serum":
            s.serum(day, v)
        elif kind == "urine":
            s.urine(day, v)
        else:
            inv = uninvolved + v
            s.flc(day, inv if kappa_disease else uninvolved, uninvolved if kappa_disease else inv)

    # diagnosis: the baseline (within 60 days before line 1 starts), with a marrow and the FLC
    level(1.0, diag)
    if kind == "urine":
        s.serum(diag, rng.uniform(0.2, 0.6))  # present but not measurable
    if kind == "light_chain":
        s.serum(diag, 0)
    else:
        inv = rng.uniform(150, 900)
        s.flc(diag, inv if kappa_disease else uninvolved, uninvolved if kappa_disease else inv)
    s.add(diag, "bm_plasma_cells", f"{rng.uniform(15, 70):.0f}", "%")
    # induction: monthly, a partial response (minimal for a minimal one, or for urine-only disease)
    ind = (0.72, 0.66) if target == "MR" or kind == "urine" else (0.6, 0.45)
    day, k = ind_start + 30, 0
    while day < ind_end and day <= stop:
        level(ind[min(k, 1)], day)
        day, k = day + 30, k + 1
    # after the transplant: day 100, a month later, then every four months, at the deepest level
    deep = {
        "serum": {"sCR": 0.0, "CR": 0.0, "VGPR": 0.06, "PR": 0.38, "MR": 0.65},
        "urine": {"VGPR": 0.03, "PR": 0.12},
        "light_chain": {"sCR": 0.0, "PR": 0.3},
    }[kind][target]
    if kind == "urine" and target == "PR":
        deep = min(deep, 180 / base)  # below 200 mg/24h and above 100
        deep = max(deep, 110 / base)
    days = [last_tx + 100, last_tx + 130]
    while days[-1] + SAMPLE_EVERY <= stop:
        days.append(days[-1] + SAMPLE_EVERY)
    days = [d for d in days if d <= stop]
    isolated = target == "PR" and kind == "serum" and len(days) >= 4 and rng.random() < 0.1
    for i, d in enumerate(days):
        if not (kind == "light_chain" and target == "sCR"):  # (its light chains are written below)
            level(deep * (0.15 if isolated and i == 2 else 1.0), d)
        if target in ("sCR", "CR"):
            s.add(d, "serum_ife", "negative")
            s.add(d, "urine_ife", rng.choice(["negative", "Negative"]))
            if target == "sCR":  # a normal ratio (0.26 to 1.65)
                s.flc(d, rng.uniform(13, 16), rng.uniform(11, 13))
            elif kappa_disease:  # still abnormal: above 1.65 ...
                s.flc(d, rng.uniform(24, 30), rng.uniform(9, 11))
            else:  # ... or below 0.26
                s.flc(d, rng.uniform(5, 7), rng.uniform(30, 40))
            if i == 0 and not no_marrow:
                s.add(d, "bm_plasma_cells", f"{rng.uniform(1, 4):.0f}", "%")
        elif target == "VGPR" and kind == "serum":
            s.add(d, "serum_ife", "positive")
    if len(days) >= 2:
        rec.truth["l1_best_response"] = "VGPR" if no_marrow else target
    day100 = target if not no_marrow else "VGPR"
    if days and rng.random() < 0.95:  # the recorded day-100 response agrees with the series
        for t in rec.transplants:
            if t["transplant_date"] == date(course["tx"]):
                t["response_day100"] = day100

    # the relapse: a rise on the day it was recorded, confirmed before the salvage (or by it)
    if relapse is None or relapse > end or lag:
        return
    nadir = base * deep
    rise = _rise(kind, nadir, base)
    level(rise, relapse)
    if target in ("sCR", "CR"):
        s.add(relapse, "serum_ife", "positive")
    confirm = None
    if l2_start is None:
        confirm = relapse + 28 if relapse + 28 <= end else None
    elif l2_start - relapse >= 2:
        confirm = relapse + (l2_start - relapse) // 2
    if confirm is not None:
        level(rise * 1.1, confirm)
    if l2_start is None:
        return
    # the second line: a partial response, then its progression on the day it was recorded
    base2 = rise * (1.1 if confirm is not None else 1.0)
    progression = course.get("l2_progression")
    last = min(end, progression - 1 if progression is not None else end)
    d = l2_start + 30
    while d <= last:
        level(base2 * 0.35, d)
        d += 60
    if progression is None or progression > end:
        return
    level(_rise(kind, base * base2 * 0.35, base), progression)
    if progression + 5 <= end:
        level(_rise(kind, base * base2 * 0.35, base) * 1.1, progression + 5)


def _rise(kind: str, nadir: float, base: float) -> float:
    """The fraction of the baseline a relapse rises to: a PD over the nadir by every rule's
    threshold (serum +1.0 g/dL, urine +400 mg/24h, dFLC +400 mg/L; at least +60%), measurable
    again at the next line's baseline."""
    if kind == "serum":
        value = max(nadir * 1.6, nadir + 1.0, 1.2)
    elif kind == "urine":
        value = max(nadir * 1.6, nadir + 400, 600)
    else:
        value = max(nadir * 1.6, nadir + 400)
    return value / base
