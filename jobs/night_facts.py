"""What a night changed, counted gross and by direction.

A snapshot of every current patient's facts (alive or dead, relapse and second-line dates, the
digest of the derived rows) is taken before the night's loads and again after its derivation;
the two are compared patient by patient. A death added and a death retired the same night are
1 and 1, never "+0"; "changed" counts patients present both times whose stored records changed
(the change log of the night's runs) or whose derived facts changed, never patients merely
re-derived.

Patients are compared by the first 64 bits of their pseudonym (a collision among a million
patients has a chance of about 3e-8): the snapshot of a million patients is a few numpy arrays
of about 30 MB, not a million strings.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, bindparam, select, text

from registry.db.models import FollowUp, Patient, PatientSummary

_NONE = np.int64(-1)  # "no such date"


def _key64(key: str) -> int:
    return int(key[:16], 16)


def _day(value: dt.date | None) -> int:
    return -1 if value is None else value.toordinal()


@dataclass(frozen=True)
class Snapshot:
    """Every current patient's facts, sorted by key."""

    keys: np.ndarray  # uint64: the pseudonym's first 64 bits
    dead: np.ndarray  # bool
    relapse: np.ndarray  # int64 ordinal day of the first relapse after the index transplant, -1: none
    second_line: np.ndarray  # int64 ordinal day the second line started, -1: none
    digest: np.ndarray  # uint64: the patient's derivation digest (first 64 bits), 0: not derived

    @property
    def patients(self) -> int:
        return len(self.keys)


def snapshot(engine: Engine) -> Snapshot:
    """The registry's current patients and their facts, one query."""
    q = (
        select(
            Patient.patient_key,
            FollowUp.vital_status,
            PatientSummary.relapse_date,
            PatientSummary.l2_start,
            PatientSummary.derivation_digest,
        )
        .select_from(Patient)
        .outerjoin(FollowUp, and_(FollowUp.patient_key == Patient.patient_key, FollowUp.is_current))
        .outerjoin(PatientSummary, PatientSummary.patient_key == Patient.patient_key)
        .where(Patient.is_current)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    keys = np.fromiter((_key64(r[0]) for r in rows), dtype=np.uint64, count=len(rows))
    order = np.argsort(keys, kind="stable")
    dead = np.fromiter((r[1] == "dead" for r in rows), dtype=bool, count=len(rows))
    relapse = np.fromiter((_day(r[2]) for r in rows), dtype=np.int64, count=len(rows))
    second = np.fromiter((_day(r[3]) for r in rows), dtype=np.int64, count=len(rows))
    digest = np.fromiter((_key64(r[4]) if r[4] else 0 for r in rows), dtype=np.uint64, count=len(rows))
    return Snapshot(keys[order], dead[order], relapse[order], second[order], digest[order])


def touched_patients(engine: Engine, run_ids: Sequence[int]) -> np.ndarray:
    """The patients (64-bit keys, sorted) of whom the runs changed a stored record."""
    if not run_ids:
        return np.zeros(0, dtype=np.uint64)
    q = text("SELECT DISTINCT patient_key FROM record_changes WHERE run_id IN :runs").bindparams(
        bindparam("runs", expanding=True)
    )
    with engine.connect() as conn:
        found = conn.execute(q, {"runs": list(run_ids)}).scalars().all()
    return np.unique(np.fromiter((_key64(k) for k in found), dtype=np.uint64, count=len(found)))


def _added_removed(before: np.ndarray, after: np.ndarray, ib: np.ndarray, ia: np.ndarray) -> tuple[int, int]:
    """How many patients have the fact after and not before (new patients included), and before
    and not after (retired patients included)."""
    kept = int(np.count_nonzero(before[ib] & after[ia]))
    return int(np.count_nonzero(after)) - kept, int(np.count_nonzero(before)) - kept


def gross_changes(before: Snapshot, after: Snapshot, touched: np.ndarray) -> dict[str, int]:
    """The night's counts, every one gross and by direction (never negative)."""
    common, ib, ia = np.intersect1d(before.keys, after.keys, assume_unique=True, return_indices=True)
    deaths = _added_removed(before.dead, after.dead, ib, ia)
    relapses = _added_removed(before.relapse != _NONE, after.relapse != _NONE, ib, ia)
    seconds = _added_removed(before.second_line != _NONE, after.second_line != _NONE, ib, ia)
    facts_differ = (
        (before.dead[ib] != after.dead[ia])
        | (before.relapse[ib] != after.relapse[ia])
        | (before.second_line[ib] != after.second_line[ia])
        | (before.digest[ib] != after.digest[ia])
    )
    changed = facts_differ | np.isin(common, touched, assume_unique=True)
    return {
        "patients_added": after.patients - len(common),
        "patients_changed": int(np.count_nonzero(changed)),
        "patients_retired": before.patients - len(common),
        "deaths_added": deaths[0],
        "deaths_removed": deaths[1],
        "relapses_added": relapses[0],
        "relapses_removed": relapses[1],
        "second_lines_added": seconds[0],
        "second_lines_removed": seconds[1],
    }


class NightState:
    """What an unfinished night leaves in the inbox (``.nightly-state.npz`` and ``.json``): the
    snapshot taken before its first load, each study's groups then, and every bundle it took.
    A night that dies after loading some bundles is finished by the next run, which reports
    what the whole night changed (against the last completed night), not only its own part.
    A completed night removes the state."""

    def __init__(self, inbox: Path) -> None:
        self.arrays = inbox / ".nightly-state.npz"
        self.json = inbox / ".nightly-state.json"

    def resume(self) -> tuple[Snapshot, dict[str, Any]] | None:
        """The unfinished night's snapshot and record, or None (the last night completed)."""
        if not (self.arrays.exists() and self.json.exists()):
            return None
        try:
            with np.load(self.arrays) as z:
                snap = Snapshot(z["keys"], z["dead"], z["relapse"], z["second_line"], z["digest"])
            record = json.loads(self.json.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError):
            return None  # unreadable: this night starts afresh
        return snap, record

    def start(self, snap: Snapshot, record: dict[str, Any]) -> None:
        tmp = self.arrays.with_name(".nightly-state.tmp.npz")
        with tmp.open("wb") as fh:
            np.savez(
                fh, keys=snap.keys, dead=snap.dead, relapse=snap.relapse, second_line=snap.second_line,
                digest=snap.digest,
            )  # fmt: skip
        os.replace(tmp, self.arrays)
        self.save(record)

    def save(self, record: dict[str, Any]) -> None:
        tmp = self.json.with_name(".nightly-state.tmp.json")
        tmp.write_text(json.dumps(record, default=str), encoding="utf-8")
        os.replace(tmp, self.json)

    def clear(self) -> None:
        self.arrays.unlink(missing_ok=True)
        self.json.unlink(missing_ok=True)
