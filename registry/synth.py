"""Synthetic, realistic export bundles (no real patient), streamed to disk.

The default shape mirrors the founding study: among 1,000 patients, 575 had an index
autologous transplant, relapsed and started a second line, in the four published groups
(136 / 161 / 209 / 69), with survival from the second line drawn so that group medians land
near the published ones; the other 425 exercise the cohort's exclusions (no transplant,
allogeneic only, salvage transplant only, no relapse yet, relapse without a second line).

Each patient is generated from its own seeded random stream, so a bundle is deterministic
for a seed and memory does not grow with ``--patients``. ``--dirty`` injects invalid rows of
many kinds and writes what it injected to ``synth-truth.json`` (which the ETL ignores).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.contract import CONTRACTS
from etl.extract import SITE_RE  # noqa: F401 - re-exported for the CLI

DEFAULT_PATIENTS = 1000
DEFAULT_CUTOFF = dt.date(2026, 6, 30)
DAYS_PER_MONTH = 30.4375
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

NAMES = {
    "lenalidomide": ["Lenalidomide", "lenalidomide", "REVLIMID", "Revlimid", "LENALIDOMIDE"],
    "bortezomib": ["Bortezomib", "VELCADE", "Velcade", "bortezomib"],
    "dexamethasone": ["Dexamethasone", "dexamethasone", "DEXAMETHASONE", "Decadron"],
    "cyclophosphamide": ["Cyclophosphamide", "cyclophosphamide", "Endoxan"],
    "thalidomide": ["Thalidomide", "thalidomide", "Thalomid"],
    "melphalan": ["Melphalan", "melphalan", "Alkeran"],
    "daratumumab": ["Daratumumab", "DARZALEX", "Darzalex Faspro", "daratumumab"],
    "carfilzomib": ["Carfilzomib", "Kyprolis", "carfilzomib"],
    "pomalidomide": ["Pomalidomide", "Pomalyst", "IMNOVID"],
    "ixazomib": ["Ixazomib", "Ninlaro"],
    "elotuzumab": ["Elotuzumab", "Empliciti"],
    "isatuximab": ["Isatuximab", "Sarclisa"],
    "selinexor": ["Selinexor", "Xpovio"],
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


def _d(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _day(date: dt.date) -> int:
    return (date - dt.date(1970, 1, 1)).days


@dataclass
class PatientRecord:
    pid: str
    category: str
    patients: list[dict[str, Any]] = field(default_factory=list)
    transplants: list[dict[str, Any]] = field(default_factory=list)
    treatments: list[dict[str, Any]] = field(default_factory=list)
    disease_events: list[dict[str, Any]] = field(default_factory=list)
    follow_up: list[dict[str, Any]] = field(default_factory=list)


class _Gen:
    def __init__(self, rng: random.Random, pid: str, category: str, cutoff: int) -> None:
        self.r = rng
        self.rec = PatientRecord(pid, category)
        self.cutoff = cutoff
        self.n = {"transplant": 0, "treatment": 0, "event": 0}
        self.end_of_follow_up = cutoff  # set once death / last contact are known

    def _id(self, kind: str) -> str:
        self.n[kind] += 1
        prefix = {"transplant": "TX", "treatment": "RX", "event": "EV"}[kind]
        return f"{prefix}-{self.rec.pid}-{self.n[kind]:03d}"

    def drug(
        self, generic: str, start: int, end: int | None, intent: str | None, stop: str | None = None
    ) -> None:
        if start > self.end_of_follow_up:
            return
        if end is not None and end < start:
            end = start
        if end is not None and end > self.end_of_follow_up:
            end, stop = None, "ongoing"
        self.rec.treatments.append(
            {
                "treatment_id": self._id("treatment"),
                "patient_id": self.rec.pid,
                "drug": self.r.choice(NAMES.get(generic, [generic])),
                "start_date": _d(start),
                "end_date": _d(end) if end is not None else "",
                "dose_mg": self.r.choice(DOSES[generic]) if generic in DOSES else "",
                "intent": intent or "",
                "stop_reason": stop or ("ongoing" if end is None else ""),
            }
        )

    def regimen(
        self,
        drugs: list[str],
        start: int,
        end: int,
        intent: str | None,
        stop: str,
        dex: bool = True,
    ) -> None:
        for g in drugs:
            self.drug(g, start + self.r.randint(0, 3), end, intent, stop)
        if dex:  # one dexamethasone row per 28-day cycle: gaps of about a week
            day = start
            while day + 21 <= end:
                self.drug("dexamethasone", day, day + 21, intent, "completed")
                day += 28

    def event(self, day: int, kind: str, response: str = "") -> None:
        if day > self.end_of_follow_up:
            return
        self.rec.disease_events.append(
            {
                "event_id": self._id("event"),
                "patient_id": self.rec.pid,
                "event_date": _d(day),
                "event_type": kind,
                "response": response,
            }
        )

    def transplant(self, day: int, kind: str = "autologous", tandem: bool = False) -> None:
        if day > self.end_of_follow_up:
            return
        self.drug("melphalan", day - 2, day - 1, "conditioning", "completed")
        self.rec.transplants.append(
            {
                "transplant_id": self._id("transplant"),
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


def _exp_months(rng: random.Random, median: float, u: float | None = None) -> int:
    u = rng.random() if u is None else u
    return max(1, int(-math.log(1 - u) * median / math.log(2) * DAYS_PER_MONTH))


def generate_patient(
    seed: int, index: int, category: str, site: str, cutoff: dt.date, strata_u: float | None = None
) -> PatientRecord:
    rng = random.Random(f"{seed}:{site}:{index}")
    pid = patient_id(site, index)
    cut = _day(cutoff)
    g = _Gen(rng, pid, category, cut)
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
        os_months, pfs2_months = GROUPS[category][1], GROUPS[category][2]
        death = l2 + _exp_months(rng, os_months, strata_u)
    elif category == "no_transplant":
        death = diag + _exp_months(rng, 70)
    else:
        death = tx + _exp_months(rng, 110)
    alive = death > cut
    last_contact = cut - rng.randint(0, 90) if alive else death
    g.end_of_follow_up = last_contact

    ind = rng.choice(INDUCTIONS)
    ind_end = tx - rng.randint(20, 40)
    g.regimen(ind, diag + rng.randint(5, 25), ind_end, rng.choice(["induction", ""]), "completed")
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
        g.transplant(tx)
        last_tx = tx
        if rng.random() < 0.1:
            last_tx = tx + rng.randint(75, 120)
            g.transplant(last_tx, tandem=True)
        g.event(last_tx + 100, "response_assessment", rng.choice(["VGPR", "CR", "sCR", "PR"]))
        lmt = category in ("G1", "G2") or (category == "no_relapse" and rng.random() < 0.6)
        other_mt = not lmt and rng.random() < 0.3
        mt_start = last_tx + rng.randint(80, 130)
        if category == "no_relapse":
            if lmt or other_mt:
                drug = "lenalidomide" if lmt else rng.choice(["thalidomide", "bortezomib"])
                g.drug(
                    drug,
                    mt_start,
                    mt_start + rng.randint(300, 2500),
                    "maintenance",
                    rng.choice(["completed", "toxicity", "patient_choice"]),
                )
        else:
            relapse = l2 - rng.randint(7, 40) if in_group else tx + rng.randint(365, 1800)
            toxic_stop = False
            if lmt or other_mt:
                drug = "lenalidomide" if lmt else rng.choice(["thalidomide", "bortezomib"])
                toxic_stop = rng.random() < 0.15 and relapse - mt_start > 400
                end = mt_start + rng.randint(200, relapse - mt_start - 100) if toxic_stop else relapse
                g.drug(drug, mt_start, end, "maintenance", "toxicity" if toxic_stop else "progression")
            toxic_stop = (lmt or other_mt) and toxic_stop
            # about 15% document the relapse only by the maintenance's stop reason
            if rng.random() < 0.85 or not (lmt or other_mt) or toxic_stop:
                g.event(relapse, rng.choice(["progression", "relapse"]), "PD")
            if category == "no_second_line":
                pass
            elif in_group:
                regimen = rng.choice(L2_LEN if category in ("G1", "G3") else L2_NO_LEN)
                # progression-only median such that progression-or-death lands on the target
                prog_median = 1 / (1 / pfs2_months - 1 / os_months)
                # at least a month on the new line before progression (no spike at a floor value)
                pfs2 = 30 + _exp_months(rng, prog_median)
                l2_end = min(l2 + pfs2, death)
                g.regimen(
                    regimen,
                    l2,
                    l2_end,
                    rng.choice(["salvage", ""]),
                    "progression" if l2 + pfs2 < death else "death",
                )
                if l2 + pfs2 < death:
                    g.event(l2 + pfs2, "progression", "PD")
                    if rng.random() < 0.6 and l2 + pfs2 + 30 < death:
                        g.regimen(
                            rng.choice(L3),
                            l2 + pfs2 + rng.randint(10, 30),
                            min(l2 + pfs2 + 400, death),
                            "salvage",
                            "completed",
                        )
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
    return g.rec


# --------------------------------------------------------------------------- dirty rows
def _corruptions() -> list[tuple[str, str, Callable[[dict[str, Any]], None]]]:
    def setv(col: str, value: str) -> Callable[[dict[str, Any]], None]:
        def f(row: dict[str, Any]) -> None:
            row[col] = value

        return f

    return [
        ("treatments", "invalid_date", setv("start_date", "2019-02-30")),
        ("treatments", "invalid_number", setv("dose_mg", "ten")),
        ("treatments", "must_be_positive", setv("dose_mg", "-5")),
        ("treatments", "not_allowed", setv("stop_reason", "lost")),
        ("treatments", "required", setv("drug", "")),
        ("treatments", "end_before_start", lambda r: r.update(end_date="1999-01-01")),
        ("treatments", "orphan", setv("patient_id", "NOPE-0000")),
        ("treatments", "date_after_cutoff", setv("start_date", "2099-01-01")),
        ("disease_events", "not_allowed", setv("event_type", "remission")),
        ("disease_events", "invalid_date", setv("event_date", "12/03/2020")),
        ("transplants", "not_allowed", setv("transplant_type", "syngeneic")),
        ("transplants", "date_before_1900", setv("transplant_date", "1850-01-01")),
        ("follow_up", "not_allowed", setv("vital_status", "missing")),
        (
            "follow_up",
            "death_date_not_allowed",
            lambda r: r.update(vital_status="alive", death_date=r["death_date"] or "2020-01-01"),
        ),
    ]


def write_bundle(
    out: str | Path,
    *,
    patients: int = DEFAULT_PATIENTS,
    seed: int = 1,
    site: str = "SYNTH-01",
    dirty: bool = False,
    cutoff: dt.date = DEFAULT_CUTOFF,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Write a bundle folder; returns (and stores in synth-truth.json) what was generated."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = _category_counts(patients)
    truth: dict[str, Any] = {
        "seed": seed,
        "site": site,
        "patients": patients,
        "categories": dict(counts),
        "injected": {},
        "quarantine": {},
    }
    writers = {}
    handles = []
    for name, contract in CONTRACTS.items():
        fh = open(out / contract.filename, "w", newline="", encoding="utf-8")  # noqa: SIM115
        handles.append(fh)
        w = csv.DictWriter(fh, fieldnames=[c.name for c in contract.columns], lineterminator="\n")
        w.writeheader()
        writers[name] = w
    rng_dirty = random.Random(f"dirty:{seed}")
    corruptions = _corruptions()
    expected_q: dict[str, int] = {n: 0 for n in CONTRACTS}
    try:
        for i, cat, k in layout(patients):
            u = None
            if cat in GROUPS:  # stratified draws keep the group medians close to target
                u = ((k * 0.6180339887) % 1.0 + random.Random(f"{seed}:u:{i}").random() / counts[cat]) % 1.0
            rec = generate_patient(seed, i, cat, site, cutoff, u)
            if dirty and rng_dirty.random() < 0.06:
                file, rule, fn = rng_dirty.choice(corruptions)
                rows = getattr(rec, file)
                if rows:
                    fn(rng_dirty.choice(rows))
                    truth["injected"].setdefault(f"{file}:{rule}", 0)
                    truth["injected"][f"{file}:{rule}"] += 1
                    expected_q[file] += 1
            if dirty and rng_dirty.random() < 0.004 and rec.treatments:
                dup = dict(rec.treatments[0])
                rec.treatments.append(dup)  # a repeated treatment_id: both rows invalid
                truth["injected"].setdefault("treatments:duplicate_id", 0)
                truth["injected"]["treatments:duplicate_id"] += 1
                expected_q["treatments"] += 2
            for name in CONTRACTS:
                for row in getattr(rec, name):
                    writers[name].writerow(row)
            if progress and (i + 1) % 1000 == 0:
                progress(i + 1)
    finally:
        for fh in handles:
            fh.close()
    truth["quarantine"] = expected_q
    manifest = {
        "format": "mm-registry-export",
        "format_version": 1,
        "site_id": site,
        "exported_at": f"{(cutoff + dt.timedelta(days=1)).isoformat()}T02:00:00+00:00",
        "data_cutoff": cutoff.isoformat(),
        "mode": "full",
        "source_system": "registry synth (synthetic data)",
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "synth-truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    return truth


def layout(patients: int) -> Iterator[tuple[int, str, int]]:
    """(patient index, category, rank within the category), deterministic and without a
    per-patient list: category c owns the indexes i whose (i * stride) mod n falls in its
    share, which spreads every category over the whole file."""
    counts = _category_counts(patients)
    stride = _coprime_stride(patients)
    bounds = []
    acc = 0
    for cat, n in counts.items():
        bounds.append((acc, acc + n, cat))
        acc += n
    seen = dict.fromkeys(counts, 0)
    for i in range(patients):
        slot = (i * stride) % patients
        cat = next(c for lo, hi, c in bounds if lo <= slot < hi)
        yield i, cat, seen[cat]
        seen[cat] += 1


def patient_id(site: str, index: int) -> str:
    return f"{site[:3]}{index:07d}"


def _category_counts(patients: int) -> dict[str, int]:
    total = sum(CATEGORY_SHARES.values())
    counts = {c: int(patients * s / total) for c, s in CATEGORY_SHARES.items()}
    counts["no_relapse"] += patients - sum(counts.values())
    return counts


def _coprime_stride(n: int) -> int:
    stride = max(1, int(n * 0.6180339887)) | 1
    while math.gcd(stride, n) != 1:
        stride += 1
    return stride
