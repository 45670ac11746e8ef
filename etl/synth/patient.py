"""One synthetic patient, shaped like a real medication export.

Besides the clinical course of its category, a patient may carry the patterns real exports
have: drugs added or switched during induction, cyclophosphamide mobilisation with G-CSF and
plerixafor before stem-cell collection, melphalan dated a week before the infusion, a
bisphosphonate or denosumab running across every line, antiviral prophylaxis, maintenance
recorded as three-month prescriptions, brand names with doses, routes, accents and
formulation suffixes, a second line starting on the day the progression is recorded, and
(revision 3 of the rules) a relapse recorded twice, salvage begun a few days before the
progression was recorded, and a blinded trial drug as the second line.
None of these changes what the registry must derive: the patient's ``truth`` (index
transplant, relapse, start of the second line, study group) is written next to the bundle
so a test can check every date.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, field
from typing import Any

from etl.synth.labs import add_lab_series
from registry.core.units import DAYS_PER_MONTH

# category: (share per 1,000 patients, median OS from 2nd line in months, median 2nd PFS)
GROUPS = {
    "G1": (136, 55.3, 10.2),
    "G2": (161, 37.9, 14.0),
    "G3": (209, 49.0, 13.0),
    "G4": (69, 30.0, 9.0),
}
OTHERS = {
    "no_transplant": 110,
    "allo_only": 25,
    "salvage_only": 30,
    "no_relapse": 200,
    "no_second_line": 60,
}
CATEGORY_SHARES = {**{g: v[0] for g, v in GROUPS.items()}, **OTHERS}

# how drug names appear in real exports: brand and generic, any case, with doses, routes,
# accents, other-language spellings and formulation suffixes (all in the vocabulary)
NAMES = {
    "lenalidomide": [
        "Lenalidomide",
        "REVLIMID",
        "Revlimid",
        "Revlimid 10 mg",
        "Lénalidomide",
        "lenalidomide 25mg",
    ],
    "bortezomib": ["Bortezomib", "VELCADE", "Velcade SC", "bortezomib 1.3 mg/m2", "Bortézomib"],
    "dexamethasone": ["Dexamethasone", "dexamethasone", "DEXAMETHASONE 40 MG", "Decadron", "Dexaméthasone"],
    "cyclophosphamide": ["Cyclophosphamide", "cyclophosphamide", "Endoxan", "Ciclofosfamida"],
    "thalidomide": ["Thalidomide", "thalidomide", "Thalomid"],
    "melphalan": ["Melphalan", "melphalan", "Alkeran", "Melphalan 200 mg/m2"],
    "daratumumab": ["Daratumumab", "DARZALEX", "Darzalex Faspro", "daratumumab-hyaluronidase"],
    "carfilzomib": ["Carfilzomib", "Kyprolis", "Kyprolis (carfilzomib)"],
    "pomalidomide": ["Pomalidomide", "Pomalyst", "IMNOVID"],
    "ixazomib": ["Ixazomib", "Ninlaro"],
    "elotuzumab": ["Elotuzumab", "Empliciti"],
    "isatuximab": ["Isatuximab", "Sarclisa"],
    "selinexor": ["Selinexor", "Xpovio"],
    "filgrastim": ["Filgrastim", "Neupogen", "G-CSF", "filgrastim-sndz"],
    "plerixafor": ["Plerixafor", "Mozobil"],
    "zoledronic acid": ["Zoledronic acid", "Zometa 4 mg IV", "zoledronate"],
    "denosumab": ["Denosumab", "Xgeva"],
    "acyclovir": ["Acyclovir", "Aciclovir 400 mg PO", "Valaciclovir"],
    # not in the vocabulary on purpose: a blinded trial drug, recorded with intent salvage
    "study drug": ["Study drug (blinded)", "STUDY DRUG (blinded)", "study drug (blinded)"],
}
DOSES: dict[str, list[float]] = {
    "lenalidomide": [25, 15, 10],
    "bortezomib": [2.6, 2.3],
    "dexamethasone": [40, 20],
    "cyclophosphamide": [500, 300],
    "thalidomide": [100, 50],
    "melphalan": [200, 140],
    "daratumumab": [1800, 1600],
    "carfilzomib": [56, 70],
    "pomalidomide": [4, 3],
    "ixazomib": [4, 3],
    "elotuzumab": [700],
    "isatuximab": [700],
    "selinexor": [100, 80],
}
INDUCTIONS = [
    ["bortezomib", "lenalidomide"],
    ["bortezomib", "cyclophosphamide"],
    ["bortezomib", "thalidomide"],
]
L2_LEN = [
    ["lenalidomide"],
    ["daratumumab", "lenalidomide"],
    ["carfilzomib", "lenalidomide"],
    ["elotuzumab", "lenalidomide"],
    ["ixazomib", "lenalidomide"],
]
L2_NO_LEN = [
    ["pomalidomide", "bortezomib"],
    ["carfilzomib"],
    ["daratumumab", "bortezomib"],
    ["daratumumab", "pomalidomide"],
    ["carfilzomib", "daratumumab"],
    ["isatuximab", "pomalidomide"],
]
L3 = [
    ["selinexor", "bortezomib"],
    ["pomalidomide", "cyclophosphamide"],
    ["isatuximab", "carfilzomib"],
]
# real-world patterns and how often a patient has each
PATTERN_RATES = {
    "drug_added_in_induction": 0.25,
    "switch_in_induction": 0.08,
    "mobilisation": 0.40,
    "melphalan_week_before": 0.20,
    "bisphosphonate": 0.50,
    "antiviral": 0.40,
    "maintenance_prescriptions": 0.15,
    "l2_on_progression_day": 0.30,
    # (r3) drawn from a stream of their own: the patterns above keep the draws they had
    "relapse_recorded_twice": 0.12,  # the clinical relapse recorded again 5-25 days later
    "salvage_before_record": 0.15,  # the progression recorded 1-14 days after the first salvage dose
    "blinded_trial_drug": 0.05,  # a second line without lenalidomide: a blinded study drug
}


def _d(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _day(date: dt.date) -> int:
    return (date - dt.date(1970, 1, 1)).days


@dataclass
class PatientRecord:
    """One synthetic patient's rows per file, and what the registry must derive."""

    pid: str
    category: str
    patients: list[dict[str, Any]] = field(default_factory=list)
    transplants: list[dict[str, Any]] = field(default_factory=list)
    treatments: list[dict[str, Any]] = field(default_factory=list)
    disease_events: list[dict[str, Any]] = field(default_factory=list)
    follow_up: list[dict[str, Any]] = field(default_factory=list)
    labs: list[dict[str, Any]] = field(default_factory=list)
    # what the registry must derive: index_transplant, relapse, l2_start (ISO dates), group,
    # l1_best_response (where the laboratory series confirms it)
    truth: dict[str, Any] = field(default_factory=dict)
    patterns: list[str] = field(default_factory=list)


class _Gen:
    def __init__(self, rng: random.Random, pid: str, category: str, cutoff: int) -> None:
        self.r = rng
        self.r3 = random.Random(0)  # the r3 patterns' own stream (seeded by generate_patient)
        self.rec = PatientRecord(pid, category)
        self.cutoff = cutoff
        self.n = {"transplant": 0, "treatment": 0, "event": 0}
        self.end_of_follow_up = cutoff  # set once death / last contact are known
        self.given: set[str] = set()  # the generic names of non-steroid, non-supportive drugs given
        # the course's days the laboratory series follows (diagnosis, transplants, relapses, lines)
        self.course: dict[str, int] = {}

    def new_id(self, kind: str) -> str:
        self.n[kind] += 1
        prefix = {"transplant": "TX", "treatment": "RX", "event": "EV"}[kind]
        return f"{prefix}-{self.rec.pid}-{self.n[kind]:03d}"

    def chance(self, pattern: str, rng: random.Random | None = None) -> bool:
        hit = (rng or self.r).random() < PATTERN_RATES[pattern]
        if hit:
            self.rec.patterns.append(pattern)
        return hit

    def drug(
        self,
        generic: str,
        start: int,
        end: int | None,
        intent: str | None,
        stop: str | None = None,
    ) -> int | None:
        """One treatment row; returns its start day (None when after the end of follow-up)."""
        if start > self.end_of_follow_up:
            return None
        if end is not None and end < start:
            end = start
        if end is not None and end > self.end_of_follow_up:
            end, stop = None, "ongoing"
        if generic not in (
            "dexamethasone",
            "zoledronic acid",
            "denosumab",
            "acyclovir",
            "filgrastim",
            "plerixafor",
        ):
            self.given.add(generic)
        self.rec.treatments.append(
            {
                "treatment_id": self.new_id("treatment"),
                "patient_id": self.rec.pid,
                "drug": self.r.choice(NAMES.get(generic, [generic])),
                "start_date": _d(start),
                "end_date": _d(end) if end is not None else "",
                "dose_mg": self.r.choice(DOSES[generic]) if generic in DOSES else "",
                "intent": intent or "",
                "stop_reason": stop or ("ongoing" if end is None else ""),
            }
        )
        return start

    def regimen(
        self,
        drugs: list[str],
        start: int,
        end: int,
        intent: str | None,
        stop: str,
        dex: bool = True,
        stagger: int = 3,
    ) -> int | None:
        """Each drug starting within ``stagger`` days of ``start``, one dexamethasone row per
        28-day cycle (gaps of about a week). Returns the earliest non-steroid start."""
        starts = [self.drug(g, start + self.r.randint(0, stagger), end, intent, stop) for g in drugs]
        if dex:
            day = start
            while day + 21 <= end:
                self.drug("dexamethasone", day, day + 21, intent, "completed")
                day += 28
        given = [s for s in starts if s is not None]
        return min(given) if given else None

    def event(self, day: int, kind: str, response: str = "") -> None:
        if day > self.end_of_follow_up:
            return
        self.rec.disease_events.append(
            {
                "event_id": self.new_id("event"),
                "patient_id": self.rec.pid,
                "event_date": _d(day),
                "event_type": kind,
                "response": response,
            }
        )

    def transplant(self, day: int, kind: str = "autologous", tandem: bool = False) -> bool:
        if day > self.end_of_follow_up:
            return False
        if self.chance("melphalan_week_before"):  # dated on the first day of admission, no intent
            self.drug("melphalan", day - self.r.randint(5, 8), day - self.r.randint(3, 4), None, "completed")
        else:
            self.drug("melphalan", day - 2, day - 1, "conditioning", "completed")
        self.rec.transplants.append(
            {
                "transplant_id": self.new_id("transplant"),
                "patient_id": self.rec.pid,
                "transplant_date": _d(day),
                "transplant_type": self.r.choice(["autologous", "auto", "Autologous"])
                if kind == "autologous"
                else "allogeneic",
                "conditioning_agent": "melphalan",
                "conditioning_dose_mg_m2": 200,
                "planned_tandem": "yes" if tandem else "no",
                "response_before": self.r.choice(["VGPR", "PR", "CR", "very good partial response"]),
                "response_day100": self.r.choice(["VGPR", "CR", "sCR", "PR"]),
            }
        )
        return True

    def induction(self, start: int, end: int) -> None:
        """Induction, sometimes with a drug added or switched on the way (one line)."""
        drugs = self.r.choice(INDUCTIONS)
        intent = self.r.choice(["induction", ""])
        length = end - start
        if length > 90 and self.chance("switch_in_induction"):
            # bortezomib stopped for neuropathy, carfilzomib instead
            switch = start + self.r.randint(40, min(80, length - 30))
            for drug in drugs:
                if drug == "bortezomib":
                    self.drug(drug, start, switch - 1, intent, "toxicity")
                else:
                    self.drug(drug, start, end, intent, "completed")
            self.drug("carfilzomib", switch, end, intent, "completed")
            self.regimen([], start, end, intent, "completed")  # its dexamethasone
        else:
            self.regimen(drugs, start, end, intent, "completed")
        if length > 60 and self.chance("drug_added_in_induction"):
            self.drug(
                "daratumumab", start + self.r.randint(35, min(80, length - 10)), end, intent, "completed"
            )

    def mobilisation(self, day: int) -> None:
        """Cyclophosphamide with G-CSF and plerixafor before stem-cell collection."""
        intent = self.r.choice(["mobilisation", "mobilization", "Mobilisation", ""])
        self.drug("cyclophosphamide", day, day + 1, intent, "completed")
        self.drug("filgrastim", day + 3, day + 12, intent, "completed")
        if self.r.random() < 0.5:
            self.drug("plerixafor", day + 11, day + 11, intent, "completed")

    def maintenance(self, drug: str, start: int, end: int, stop: str) -> None:
        intent = self.r.choice(["maintenance", "maintenance", ""])
        if end - start > 200 and self.chance("maintenance_prescriptions"):
            starts = list(range(start, end, 91))  # three-month prescriptions, a week apart
            for day in starts[:-1]:
                self.drug(drug, day, day + 84, intent, "completed")
            self.drug(drug, starts[-1], end, intent, stop)
        else:
            self.drug(drug, start, end, intent, stop)


def _exp_months(rng: random.Random, median: float, u: float | None = None) -> int:
    u = rng.random() if u is None else u
    return max(1, int(-math.log(1 - u) * median / math.log(2) * DAYS_PER_MONTH))


def patient_id(site: str, index: int) -> str:
    """The synthetic source id of patient ``index`` at ``site``."""
    return f"{site[:3]}{index:07d}"


def generate_patient(
    seed: int, index: int, category: str, site: str, cutoff: dt.date, strata_u: float | None = None
) -> PatientRecord:
    """One synthetic patient of ``category``, from its own seeded stream (deterministic)."""
    rng = random.Random(f"{seed}:{site}:{index}")
    pid = patient_id(site, index)
    cut = _day(cutoff)
    g = _Gen(rng, pid, category, cut)
    g.r3 = random.Random(f"{seed}:{site}:{index}:r3")
    in_group = category in GROUPS
    # second-line start spread so that follow-up after it ranges from ~2 to ~14 years
    if in_group:
        l2 = cut - rng.randint(800, 5200)
        pfs_days = rng.randint(360, 1800)  # index transplant -> relapse
        tx = l2 - pfs_days - rng.randint(7, 40)
    else:
        tx = cut - rng.randint(400, 5200)
    diag = tx - rng.randint(130, 220)
    birth = diag - int(rng.uniform(40, 72) * 365.25)
    fish = [rng.choices(["present", "absent", "not_tested", ""], [12, 70, 12, 6])[0] for _ in range(4)]
    g.rec.patients.append(
        {
            "patient_id": pid,
            "sex": rng.choice(["F", "M", "male", "female", "M"]),
            "birth_date": _d(birth),
            "diagnosis_date": _d(diag),
            "iss_stage": rng.choice(["I", "II", "III", "1", "2", "3", ""]),
            "riss_stage": rng.choice(["I", "II", "III", ""]),
            "ldh_elevated": rng.choice(["yes", "no", ""]),
            "del17p": fish[0],
            "t_4_14": fish[1],
            "t_14_16": fish[2],
            "gain_1q": fish[3],
            "heavy_chain": rng.choice(["IgG", "IgA", "IgG", "none"]),
            "light_chain": rng.choice(["kappa", "lambda"]),
        }
    )

    # survival: decide death / last contact first so no record falls after them
    if in_group:
        death = l2 + _exp_months(rng, GROUPS[category][1], strata_u)
    elif category == "no_transplant":
        death = diag + _exp_months(rng, 70)
    else:
        death = tx + _exp_months(rng, 110)
    alive = death > cut
    last_contact = cut - rng.randint(0, 90) if alive else death
    g.end_of_follow_up = last_contact

    ind_start = diag + rng.randint(5, 25)
    ind_end = tx - rng.randint(20, 40)
    g.course.update(diag=diag, ind_start=ind_start, ind_end=ind_end, death=death)
    g.induction(ind_start, ind_end)
    if g.chance("bisphosphonate"):  # from diagnosis, across every line
        stop = diag + rng.randint(700, 2000)
        g.drug("zoledronic acid", diag + rng.randint(5, 30), stop, "", "completed")
        if rng.random() < 0.5:
            g.drug("denosumab", stop + 30, None, "", None)
    if category == "no_transplant":
        g.event(ind_end + 30, "response_assessment", rng.choice(["PR", "VGPR"]))
    elif category == "allo_only":
        g.transplant(tx, kind="allogeneic")
    elif category == "salvage_only":
        prog = ind_end + rng.randint(60, 200)
        g.event(prog, "progression")
        g.regimen(rng.choice(L2_NO_LEN), prog + 14, prog + 200, "salvage", "completed")
        g.transplant(prog + 240)
    else:
        if g.chance("mobilisation"):
            g.mobilisation(ind_end + rng.randint(2, 6))
        g.transplant(tx)
        g.rec.truth["index_transplant"] = _d(tx)
        if g.chance("antiviral"):
            g.drug("acyclovir", tx + 1, tx + rng.randint(90, 365), "", "completed")
        last_tx = tx
        if rng.random() < 0.1:
            last_tx = tx + rng.randint(75, 120)
            g.transplant(last_tx, tandem=True)
        g.event(last_tx + 100, "response_assessment", rng.choice(["VGPR", "CR", "sCR", "PR"]))
        g.course.update(tx=tx, last_tx=last_tx)
        _after_transplant(g, rng, category, tx, last_tx, l2 if in_group else 0, death)
    if rng.random() < 0.01:
        g.drug("investigational agent x", diag + 400, diag + 430, "", "completed")
    g.rec.follow_up.append(
        {
            "patient_id": pid,
            "last_contact_date": _d(last_contact),
            "vital_status": "alive" if alive else "dead",
            "death_date": "" if alive else _d(death),
            "cause_of_death": "" if alive else rng.choice(["myeloma", "infection", "other", "unknown"]),
        }
    )
    # the laboratory series, from a stream of its own (every draw above keeps its value)
    g.course["end"] = last_contact
    labs_rng = random.Random(f"{seed}:{site}:{index}:labs")
    add_lab_series(g.rec, g.course, labs_rng, _d, lambda iso: _day(dt.date.fromisoformat(iso)))
    return g.rec


def _after_transplant(
    g: _Gen, rng: random.Random, category: str, tx: int, last_tx: int, l2: int, death: int
) -> None:
    """Maintenance, relapse and the second and third lines of a transplanted patient."""
    in_group = category in GROUPS
    lmt = category in ("G1", "G2") or (category == "no_relapse" and rng.random() < 0.6)
    other_mt = not lmt and rng.random() < 0.3
    mt_start = last_tx + rng.randint(80, 130)
    if category == "no_relapse":
        if lmt or other_mt:
            drug = "lenalidomide" if lmt else rng.choice(["thalidomide", "bortezomib"])
            stop = rng.choice(["completed", "toxicity", "patient_choice"])
            g.maintenance(drug, mt_start, mt_start + rng.randint(300, 2500), stop)
        return
    relapse, lag = _relapse_day(g, rng, in_group, tx, l2)
    toxic_stop = False
    if lmt or other_mt:
        toxic_stop = _maintenance_to_relapse(g, rng, lmt, mt_start, relapse, lag, l2)
    if relapse <= g.end_of_follow_up:
        g.rec.truth["relapse"] = _d(relapse)
    g.course.update(relapse=relapse, lag=lag)
    if in_group:
        g.course["l2"] = l2
    # about 15% document the relapse only by the maintenance's stop reason
    if rng.random() < 0.85 or not (lmt or other_mt) or toxic_stop or lag:
        g.event(relapse, rng.choice(["progression", "relapse"]), "PD")
    if in_group and g.chance("relapse_recorded_twice", g.r3):
        g.event(relapse + g.r3.randint(5, 25), "relapse", "PD")  # the clinical relapse, again
    if in_group:
        _second_line(g, rng, category, relapse, lag, l2, death)


def _relapse_day(g: _Gen, rng: random.Random, in_group: bool, tx: int, l2: int) -> tuple[int, int]:
    """The relapse's recorded day, and how many days it trails the first salvage dose (r3)."""
    if not in_group:
        return tx + rng.randint(365, 1800), 0
    relapse = l2 if g.chance("l2_on_progression_day") else l2 - rng.randint(7, 40)
    if l2 + 14 < g.end_of_follow_up and g.chance("salvage_before_record", g.r3):
        lag = g.r3.randint(1, 14)
        return l2 + lag, lag  # the clinic letter or the confirming result, after the first dose
    return relapse, 0


def _maintenance_to_relapse(
    g: _Gen, rng: random.Random, lmt: bool, mt_start: int, relapse: int, lag: int, l2: int
) -> bool:
    """Maintenance until the relapse (stopped for it), or stopped earlier for toxicity (True)."""
    drug = "lenalidomide" if lmt else rng.choice(["thalidomide", "bortezomib"])
    toxic_stop = rng.random() < 0.15 and relapse - mt_start > 400
    end = mt_start + rng.randint(200, relapse - mt_start - 100) if toxic_stop else relapse
    stop = "toxicity" if toxic_stop else "progression"
    if lag and not toxic_stop:  # stopped the week before the salvage, the reason not recorded
        end, stop = l2 - g.r3.randint(5, 9), "other"
    g.maintenance(drug, mt_start, end, stop)
    return toxic_stop


def _second_line(
    g: _Gen, rng: random.Random, category: str, relapse: int, lag: int, l2: int, death: int
) -> None:
    """The study group's second line, its progression and (often) a third line."""
    regimen = rng.choice(L2_LEN if category in ("G1", "G3") else L2_NO_LEN)
    salvage_intent = rng.choice(["salvage", ""])
    if category in ("G2", "G4") and g.chance("blinded_trial_drug", g.r3):
        regimen, salvage_intent = ["study drug"], "salvage"  # a blinded trial drug records its intent
    if lag and not set(regimen) - g.given:
        salvage_intent = "salvage"  # drugs of line 1 again: only a recorded intent makes it salvage
    # progression-only median such that progression-or-death lands on the target
    os_months, pfs2_months = GROUPS[category][1], GROUPS[category][2]
    prog_median = 1 / (1 / pfs2_months - 1 / os_months)
    # at least a month on the new line before progression (no spike at a floor value)
    pfs2 = 30 + _exp_months(rng, prog_median)
    if lag:  # the next progression is an episode of its own: more than 30 days after the record
        pfs2 = max(pfs2, lag + 31)
    progression = l2 + pfs2
    # on the progression day (or before it was recorded) the first drug starts that very day
    stagger = 0 if relapse == l2 or lag else 3
    stop = "progression" if progression < death else "death"
    start = g.regimen(regimen, l2, min(progression, death), salvage_intent, stop, stagger=stagger)
    g.rec.truth["l2_start"] = _d(start) if start is not None else None
    g.rec.truth["group"] = category
    progressed = progression < death and progression <= g.end_of_follow_up
    g.rec.truth["l2_progression"] = _d(progression) if progressed else ""
    if progression < death:
        g.event(progression, "progression", "PD")
        g.course["l2_progression"] = progression
        if rng.random() < 0.6 and progression + 30 < death:
            third = rng.choice(L3)
            g.regimen(
                third,
                progression + rng.randint(10, 30),
                min(progression + 400, death),
                "salvage",
                "completed",
            )
