"""Synthetic, realistic export bundles (no real patient), streamed to disk.

The default shape mirrors the founding study: among 1,000 patients, 575 had an index
autologous transplant, relapsed and started a second line, in the four published groups
(136 / 161 / 209 / 69), with survival from the second line drawn so that group medians land
near the published ones; the other 425 exercise the cohort's exclusions (no transplant,
allogeneic only, salvage transplant only, no relapse yet, relapse without a second line).

Each patient is generated from its own seeded random stream, so a bundle is deterministic
for a seed and memory does not grow with ``--patients``. ``synth-truth.json`` (which the ETL
ignores) says what was generated; ``synth-truth-patients.csv`` has, per patient, the dates
the registry must derive. ``--dirty`` adds invalid rows, and extra patients holding invalid
rows, without touching a clean row: the clean patients derive exactly as without it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from etl.specs import SPECS
from etl.synth.patient import CATEGORY_SHARES, GROUPS, PatientRecord, generate_patient
from registry.contract.rules import RuleCode

# the files the generator writes: every file its patient records hold (``labs=False`` leaves
# out the optional labs.csv: a bundle without it is a valid bundle, half the rows)
GENERATED = tuple(n for n in SPECS if n in {f.name for f in dataclasses.fields(PatientRecord)})

DEFAULT_PATIENTS = 1000
DEFAULT_CUTOFF = dt.date(2026, 6, 30)
TRUTH_COLUMNS = [
    "patient_id",
    "category",
    "group",
    "index_transplant",
    "relapse",
    "l2_start",
    "l2_progression",  # the first progression after the 2nd line started (pfs_2l, pfs2): r3
    "l1_best_response",  # line 1's best response the laboratory series confirms (else empty)
    "patterns",
]


# --------------------------------------------------------------------------- dirty rows
Corruption = tuple[str, RuleCode, Callable[[dict[str, Any]], None]]


def _corruptions() -> list[Corruption]:
    def setv(col: str, value: str) -> Callable[[dict[str, Any]], None]:
        def f(row: dict[str, Any]) -> None:
            row[col] = value

        return f

    return [
        ("treatments", RuleCode.INVALID_DATE, setv("start_date", "2019-02-30")),
        ("treatments", RuleCode.INVALID_NUMBER, setv("dose_mg", "ten")),
        ("treatments", RuleCode.MUST_BE_POSITIVE, setv("dose_mg", "-5")),
        ("treatments", RuleCode.NOT_ALLOWED, setv("stop_reason", "lost")),
        ("treatments", RuleCode.REQUIRED, setv("drug", "")),
        ("treatments", RuleCode.END_BEFORE_START, lambda r: r.update(end_date="1999-01-01")),
        ("treatments", RuleCode.ORPHAN, setv("patient_id", "NOPE-0000")),
        ("treatments", RuleCode.DATE_AFTER_CUTOFF, setv("start_date", "2099-01-01")),
        ("disease_events", RuleCode.NOT_ALLOWED, setv("event_type", "remission")),
        ("disease_events", RuleCode.INVALID_DATE, setv("event_date", "12/03/2020")),
        ("transplants", RuleCode.NOT_ALLOWED, setv("transplant_type", "syngeneic")),
        ("transplants", RuleCode.DATE_BEFORE_1900, setv("transplant_date", "1850-01-01")),
        ("follow_up", RuleCode.NOT_ALLOWED, setv("vital_status", "missing")),
        (
            "follow_up",
            RuleCode.DEATH_DATE_NOT_ALLOWED,
            lambda r: r.update(vital_status="alive", death_date=r["death_date"] or "2020-01-01"),
        ),
    ]


_ID_COLUMN = {"treatments": "treatment_id", "disease_events": "event_id", "transplants": "transplant_id"}


class _Dirt:
    """Invalid rows added next to a patient's clean rows (copies with ids of their own), and
    follow-up problems on extra patients (one follow-up row per patient: a bad copy would
    make the clean one a duplicate). No clean row is changed."""

    def __init__(self, rng: random.Random, injected: dict[str, int]) -> None:
        self.rng = rng
        self.injected = injected
        self.quarantined: dict[str, int] = {n: 0 for n in GENERATED}
        self.pending: Corruption | None = None

    def _count(self, key: str, file: str, rows: int) -> None:
        self.injected[key] = self.injected.get(key, 0) + 1
        self.quarantined[file] += rows

    def wants_extra_patient(self) -> bool:
        """Draw this patient's corruption; a follow-up one needs an extra patient to hold it."""
        self.pending = self.rng.choice(_corruptions()) if self.rng.random() < 0.06 else None
        return self.pending is not None and self.pending[0] == "follow_up"

    def add_rows(self, rec: PatientRecord, holder: PatientRecord | None) -> None:
        if self.pending is not None:
            file, rule, fn = self.pending
            if file == "follow_up":
                assert holder is not None
                fn(holder.follow_up[0])
                self._count(f"{file}:{rule}", file, 1)
            elif getattr(rec, file):
                bad = dict(self.rng.choice(getattr(rec, file)))
                bad[_ID_COLUMN[file]] += "-BAD"
                fn(bad)
                getattr(rec, file).append(bad)
                self._count(f"{file}:{rule}", file, 1)
        if self.rng.random() < 0.004 and rec.treatments:
            # two extra rows sharing one treatment_id: both invalid
            for _ in range(2):
                dup = dict(rec.treatments[0])
                dup["treatment_id"] += "-DUP"
                rec.treatments.append(dup)
            self._count(f"treatments:{RuleCode.DUPLICATE_ID}", "treatments", 2)


def _truth_row(rec: PatientRecord) -> dict[str, Any]:
    t = rec.truth
    return {
        "patient_id": rec.pid,
        "category": rec.category,
        "group": t.get("group", ""),
        "index_transplant": t.get("index_transplant", ""),
        "relapse": t.get("relapse", ""),
        "l2_start": t.get("l2_start", ""),
        "l2_progression": t.get("l2_progression", ""),
        "l1_best_response": t.get("l1_best_response", ""),
        "patterns": ";".join(rec.patterns),
    }


def write_bundle(
    out: str | Path,
    *,
    patients: int = DEFAULT_PATIENTS,
    seed: int = 1,
    site: str = "SYNTH-01",
    dirty: bool = False,
    cutoff: dt.date = DEFAULT_CUTOFF,
    progress: Callable[[int], None] | None = None,
    labs: bool = True,
) -> dict[str, Any]:
    """Write a bundle folder; returns (and stores in synth-truth.json) what was generated.
    ``labs=False`` writes no labs.csv (the records and every other file are the same: the
    laboratory series is drawn from a stream of its own)."""
    out = Path(out)
    files = tuple(n for n in GENERATED if labs or n != "labs")
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
    for name in files:
        contract = SPECS[name]
        fh = open(out / contract.filename, "w", newline="", encoding="utf-8")  # noqa: SIM115
        handles.append(fh)
        w = csv.DictWriter(fh, fieldnames=[c.name for c in contract.columns], lineterminator="\n")
        w.writeheader()
        writers[name] = w
    truth_fh = open(out / "synth-truth-patients.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
    handles.append(truth_fh)
    truth_w = csv.DictWriter(truth_fh, fieldnames=TRUTH_COLUMNS, lineterminator="\n")
    truth_w.writeheader()
    dirt = _Dirt(random.Random(f"dirty:{seed}"), truth["injected"])
    extra = patients  # extra (dirty) patients are numbered after the clean ones
    try:
        for i, cat, k in layout(patients):
            u = None
            if cat in GROUPS:  # stratified draws keep the group medians close to target
                u = ((k * 0.6180339887) % 1.0 + random.Random(f"{seed}:u:{i}").random() / counts[cat]) % 1.0
            recs = [generate_patient(seed, i, cat, site, cutoff, u)]
            if dirty:
                holder = None
                if dirt.wants_extra_patient():
                    holder = generate_patient(seed, extra, "no_transplant", site, cutoff)
                    holder.category = "dirty_extra"
                    extra += 1
                dirt.add_rows(recs[0], holder)
                if holder is not None:
                    recs.append(holder)
            for rec in recs:
                for name in files:
                    for row in getattr(rec, name):
                        writers[name].writerow(row)
                truth_w.writerow(_truth_row(rec))
            if progress and (i + 1) % 1000 == 0:
                progress(i + 1)
    finally:
        for fh in handles:
            fh.close()
    truth["extra_patients"] = extra - patients
    truth["quarantine"] = {name: n for name, n in dirt.quarantined.items() if name in files}
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
