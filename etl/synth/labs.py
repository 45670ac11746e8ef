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
    p = _Course(rec, course, rng, date, day_of)
    p.diagnosis()
    p.induction()
    deep, days = p.after_transplant()
    p.truth(days)
    p.relapse(deep)


class _Course:
    """One patient's series, drawn phase by phase (the draws in a fixed order: the same seed
    gives the same rows)."""

    def __init__(
        self,
        rec: Any,
        course: dict[str, int],
        rng: random.Random,
        date: Callable[[int], str],
        day_of: Callable[[str], int],
    ) -> None:
        self.rec, self.c, self.r, self.date = rec, course, rng, date
        self.s = _Series(rec, rng, date)
        patient = rec.patients[0]
        self.kind = (
            "light_chain"
            if patient.get("heavy_chain") == "none"
            else "urine"
            if rng.random() < 0.08
            else "serum"
        )
        self.kappa = patient.get("light_chain") != "lambda"
        weights = TARGETS[self.kind]
        self.target = rng.choices(list(weights), list(weights.values()))[0]
        self.no_marrow = self.target == "CR" and rng.random() < 0.25  # a CR without a marrow: VGPR at most
        self.end = min(course["death"] - 1, course["end"])
        self.relapse_day = course.get("relapse")
        self.l2_start = day_of(rec.truth["l2_start"]) if rec.truth.get("l2_start") else course.get("l2")
        self.lag = course.get("lag", 0)
        # line 1 is sampled until its relapse (with salvage begun before the record: until then)
        self.stop = self.end
        if self.relapse_day is not None and self.relapse_day <= self.end:
            self.stop = self.relapse_day - 1
        if self.lag and self.l2_start is not None:
            self.stop = min(self.stop, self.l2_start - 1)
        # the paraprotein at each level: baseline, induction, the deepest response
        self.base = {
            "serum": rng.uniform(1.5, 6.0),
            "urine": rng.uniform(600, 3000),
            "light_chain": rng.uniform(400, 3000),
        }[self.kind]
        self.uninvolved = rng.uniform(8, 15)

    def level(self, fraction: float, day: int) -> None:
        """The disease at ``fraction`` of its baseline (0: below the limit)."""
        v = self.base * fraction * (self.r.uniform(0.97, 1.03) if fraction else 1)
        if self.kind == "serum":
            self.s.serum(day, v)
        elif self.kind == "urine":
            self.s.urine(day, v)
        else:
            self._light_chains(day, self.uninvolved + v)

    def _light_chains(self, day: int, involved: float) -> None:
        low = self.uninvolved
        self.s.flc(day, involved if self.kappa else low, low if self.kappa else involved)

    def diagnosis(self) -> None:
        """The baseline (within 60 days before line 1 starts), with a marrow and the FLC."""
        s, diag = self.s, self.c["diag"]
        self.level(1.0, diag)
        if self.kind == "urine":
            s.serum(diag, self.r.uniform(0.2, 0.6))  # present but not measurable
        if self.kind == "light_chain":
            s.serum(diag, 0)
        else:
            self._light_chains(diag, self.r.uniform(150, 900))
        s.add(diag, "bm_plasma_cells", f"{self.r.uniform(15, 70):.0f}", "%")

    def induction(self) -> None:
        """Monthly, a partial response (minimal for a minimal one, or for urine-only disease)."""
        ind = (0.72, 0.66) if self.target == "MR" or self.kind == "urine" else (0.6, 0.45)
        day, k = self.c["ind_start"] + 30, 0
        while day < self.c["ind_end"] and day <= self.stop:
            self.level(ind[min(k, 1)], day)
            day, k = day + 30, k + 1

    def after_transplant(self) -> tuple[float, list[int]]:
        """Day 100, a month later, then every four months, at the deepest level. Returns that
        level (a fraction of the baseline) and the days sampled."""
        kind, target = self.kind, self.target
        deep = DEEP[kind][target]
        if kind == "urine" and target == "PR":
            deep = max(min(deep, 180 / self.base), 110 / self.base)  # below 200 mg/24h and above 100
        last_tx = self.c["last_tx"]
        days = [last_tx + 100, last_tx + 130]
        while days[-1] + SAMPLE_EVERY <= self.stop:
            days.append(days[-1] + SAMPLE_EVERY)
        days = [d for d in days if d <= self.stop]
        isolated = target == "PR" and kind == "serum" and len(days) >= 4 and self.r.random() < 0.1
        for i, d in enumerate(days):
            if not (kind == "light_chain" and target == "sCR"):  # (its light chains: below)
                self.level(deep * (0.15 if isolated and i == 2 else 1.0), d)
            if target in ("sCR", "CR"):
                self._complete(d, first=i == 0)
            elif target == "VGPR" and kind == "serum":
                self.s.add(d, "serum_ife", "positive")
        return deep, days

    def _complete(self, day: int, first: bool) -> None:
        """A complete response's evidence: immunofixation negative, the light chains (a normal
        ratio for sCR), the marrow at the first assessment (unless this CR has none)."""
        s, r = self.s, self.r
        s.add(day, "serum_ife", "negative")
        s.add(day, "urine_ife", r.choice(["negative", "Negative"]))
        if self.target == "sCR":  # a normal ratio (0.26 to 1.65)
            s.flc(day, r.uniform(13, 16), r.uniform(11, 13))
        elif self.kappa:  # still abnormal: above 1.65 ...
            s.flc(day, r.uniform(24, 30), r.uniform(9, 11))
        else:  # ... or below 0.26
            s.flc(day, r.uniform(5, 7), r.uniform(30, 40))
        if first and not self.no_marrow:
            s.add(day, "bm_plasma_cells", f"{r.uniform(1, 4):.0f}", "%")

    def truth(self, days: list[int]) -> None:
        """Line 1's best response (two assessments at the deepest level confirm it), and the
        recorded day-100 response agreeing with the series (mostly)."""
        reached = "VGPR" if self.no_marrow else self.target
        if len(days) >= 2:
            self.rec.truth["l1_best_response"] = reached
        if days and self.r.random() < 0.95:
            for t in self.rec.transplants:
                if t["transplant_date"] == self.date(self.c["tx"]):
                    t["response_day100"] = reached

    def relapse(self, deep: float) -> None:
        """A rise on the day the relapse was recorded, confirmed before the salvage (or by
        it); then the second line's partial response and its progression on its recorded day."""
        day, end, l2_start = self.relapse_day, self.end, self.l2_start
        if day is None or day > end or self.lag:
            return
        rise = _rise(self.kind, self.base * deep, self.base)
        self.level(rise, day)
        if self.target in ("sCR", "CR"):
            self.s.add(day, "serum_ife", "positive")
        confirm = None
        if l2_start is None:
            confirm = day + 28 if day + 28 <= end else None
        elif l2_start - day >= 2:
            confirm = day + (l2_start - day) // 2
        if confirm is not None:
            self.level(rise * 1.1, confirm)
        if l2_start is not None:
            self.second_line(l2_start, rise * (1.1 if confirm is not None else 1.0))

    def second_line(self, start: int, base2: float) -> None:
        end = self.end
        progression = self.c.get("l2_progression")
        last = min(end, progression - 1 if progression is not None else end)
        d = start + 30
        while d <= last:
            self.level(base2 * 0.35, d)
            d += 60
        if progression is None or progression > end:
            return
        rise = _rise(self.kind, self.base * base2 * 0.35, self.base)
        self.level(rise, progression)
        if progression + 5 <= end:
            self.level(rise * 1.1, progression + 5)


# line 1's deepest level, a fraction of the baseline, by kind of disease and response
DEEP = {
    "serum": {"sCR": 0.0, "CR": 0.0, "VGPR": 0.06, "PR": 0.38, "MR": 0.65},
    "urine": {"VGPR": 0.03, "PR": 0.12},
    "light_chain": {"sCR": 0.0, "PR": 0.3},
}


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
