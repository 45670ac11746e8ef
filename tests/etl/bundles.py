"""Build small export bundles for tests: a valid base that each test corrupts."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Any

from etl.specs import SPECS

MANIFEST = {
    "format": "mm-registry-export",
    "format_version": 1,
    "site_id": "TEST-SITE",
    "exported_at": "2026-07-01T02:00:00+00:00",
    "data_cutoff": "2026-06-30",
    "mode": "full",
}


def base_rows() -> dict[str, list[dict[str, Any]]]:
    """Three patients: P1 (VRd, ASCT, len maintenance, relapse, DRd, alive), P2 (dead),
    P3 (no transplant)."""
    rows: dict[str, list[dict[str, Any]]] = {
        "patients": [
            {
                "patient_id": "MRN-0001",
                "sex": "F",
                "birth_date": "1960-03-01",
                "diagnosis_date": "2019-01-10",
                "iss_stage": "II",
                "del17p": "absent",
                "t_4_14": "absent",
                "t_14_16": "absent",
                "gain_1q": "present",
            },
            {
                "patient_id": "MRN-0002",
                "sex": "male",
                "birth_date": "1955-07-20",
                "diagnosis_date": "2018-05-02",
                "iss_stage": "3",
                "del17p": "present",
            },
            {
                "patient_id": "MRN-0003",
                "sex": "M",
                "birth_date": "1950-01-01",
                "diagnosis_date": "2020-02-02",
                "del17p": "not_tested",
            },
        ],
        "transplants": [
            {
                "transplant_id": "TX1",
                "patient_id": "MRN-0001",
                "transplant_date": "2019-06-01",
                "transplant_type": "auto",
                "conditioning_agent": "melphalan",
                "conditioning_dose_mg_m2": "200",
                "response_day100": "VGPR",
            },
            {
                "transplant_id": "TX2",
                "patient_id": "MRN-0002",
                "transplant_date": "2018-11-01",
                "transplant_type": "autologous",
            },
        ],
        "treatments": [
            {
                "treatment_id": "R1",
                "patient_id": "MRN-0001",
                "drug": "Velcade",
                "start_date": "2019-01-20",
                "end_date": "2019-05-01",
                "stop_reason": "completed",
            },
            {
                "treatment_id": "R2",
                "patient_id": "MRN-0001",
                "drug": "REVLIMID",
                "start_date": "2019-01-20",
                "end_date": "2019-05-01",
                "dose_mg": "25",
            },
            {
                "treatment_id": "R3",
                "patient_id": "MRN-0001",
                "drug": "dexamethasone",
                "start_date": "2019-01-20",
                "end_date": "2019-04-20",
            },
            {
                "treatment_id": "R4",
                "patient_id": "MRN-0001",
                "drug": "lenalidomide",
                "start_date": "2019-09-01",
                "end_date": "2022-03-01",
                "dose_mg": "10",
                "intent": "maintenance",
                "stop_reason": "progression",
            },
            {
                "treatment_id": "R5",
                "patient_id": "MRN-0001",
                "drug": "Darzalex",
                "start_date": "2022-03-15",
                "end_date": "",
                "stop_reason": "ongoing",
            },
            {
                "treatment_id": "R6",
                "patient_id": "MRN-0001",
                "drug": "lenalidomide",
                "start_date": "2022-03-15",
                "end_date": "",
            },
            {
                "treatment_id": "R7",
                "patient_id": "MRN-0002",
                "drug": "bortezomib",
                "start_date": "2018-05-10",
                "end_date": "2018-09-01",
            },
            {
                "treatment_id": "R8",
                "patient_id": "MRN-0003",
                "drug": "lenalidomide",
                "start_date": "2020-02-10",
                "end_date": "2020-12-01",
            },
        ],
        "disease_events": [
            {
                "event_id": "E1",
                "patient_id": "MRN-0001",
                "event_date": "2019-09-10",
                "event_type": "response_assessment",
                "response": "very good partial response",
            },
            {
                "event_id": "E2",
                "patient_id": "MRN-0001",
                "event_date": "2022-03-01",
                "event_type": "progression",
                "response": "PD",
            },
            {
                "event_id": "E3",
                "patient_id": "MRN-0002",
                "event_date": "2019-06-01",
                "event_type": "relapse",
            },
        ],
        "follow_up": [
            {"patient_id": "MRN-0001", "last_contact_date": "2026-05-01", "vital_status": "alive"},
            {
                "patient_id": "MRN-0002",
                "last_contact_date": "2020-01-15",
                "vital_status": "dead",
                "death_date": "2020-01-15",
                "cause_of_death": "myeloma",
            },
            {"patient_id": "MRN-0003", "last_contact_date": "2026-06-01", "vital_status": "alive"},
        ],
    }
    return copy.deepcopy(rows)


def write_bundle(
    folder: Path,
    rows: dict[str, list[dict[str, Any]]] | None = None,
    manifest: dict[str, Any] | None = None,
    *,
    line_ending: str = "\n",
    bom: bool = False,
    extra_columns: dict[str, list[str]] | None = None,
) -> Path:
    rows = base_rows() if rows is None else rows
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({**MANIFEST, **(manifest or {})}))
    for name, contract in SPECS.items():
        if name not in rows:
            continue
        cols = [c.name for c in contract.columns] + (extra_columns or {}).get(name, [])
        with (folder / contract.filename).open("w", newline="", encoding="utf-8") as fh:
            if bom:
                fh.write("\ufeff")
            w = csv.DictWriter(fh, fieldnames=cols, lineterminator=line_ending, restval="")
            w.writeheader()
            for r in rows[name]:
                w.writerow(r)
    return folder


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A bundle file's header and rows (as the tests edit them)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write_csv(path: Path, fields: list[str], rows: list[dict[str, str]]) -> None:
    """Write a bundle file back (LF line endings)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
