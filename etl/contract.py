"""The input contract (export-format.md, version 1): one Pandera ``DataFrameModel`` per file,
plus the column catalogue (required, kind, allowed values and their synonyms) that the
pre-parser and ``docs/input-contract.md`` are generated from.

The pre-parser turns every column into its typed form (dates parsed with an explicit format,
numbers coerced, coded values mapped through their synonyms) and records parse failures as
row reasons itself — Pandera then validates typed columns only, which keeps it vectorised
(see ENGINEERING-NOTES: a single bad date makes Pandera's own coercion element-wise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

FORMAT = "mm-registry-export"
FORMAT_VERSION = 1
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 200

RESPONSES = {
    "scr": "sCR",
    "stringent complete response": "sCR",
    "cr": "CR",
    "complete response": "CR",
    "vgpr": "VGPR",
    "very good partial response": "VGPR",
    "pr": "PR",
    "partial response": "PR",
    "mr": "MR",
    "minimal response": "MR",
    "minor response": "MR",
    "sd": "SD",
    "stable disease": "SD",
    "pd": "PD",
    "progressive disease": "PD",
}
YES_NO = {"yes": "yes", "no": "no"}
FISH = {
    "present": "present",
    "absent": "absent",
    "not_tested": "not_tested",
    "not tested": "not_tested",
}


def _identity(*values: str) -> dict[str, str]:
    return {v.lower(): v for v in values}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # id | date | number | code | text
    required: bool = False
    codes: dict[str, str] = field(default_factory=dict)  # lower-case synonym -> canonical
    max_length: int = MAX_TEXT_LENGTH
    description: str = ""

    @property
    def allowed(self) -> list[str]:
        return sorted(set(self.codes.values()))


@dataclass(frozen=True)
class FileContract:
    name: str  # file name without .csv
    id_column: str
    id_namespace: str  # the <file> part of the pseudonym recipe
    columns: tuple[Column, ...]

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


FISH_COLS = tuple(
    Column(n, "code", codes=FISH, description="FISH result; empty = not recorded")
    for n in ("del17p", "t_4_14", "t_14_16", "gain_1q")
)

CONTRACTS: dict[str, FileContract] = {
    "patients": FileContract(
        "patients",
        "patient_id",
        "patient",
        (
            Column("patient_id", "id", True, description="source identifier (often the MRN)"),
            Column(
                "sex",
                "code",
                True,
                {"f": "F", "female": "F", "m": "M", "male": "M", "u": "U", "unknown": "U"},
            ),
            Column("birth_date", "date", True),
            Column("diagnosis_date", "date", True, description="multiple myeloma diagnosis"),
            Column(
                "iss_stage",
                "code",
                codes={"i": "I", "ii": "II", "iii": "III", "1": "I", "2": "II", "3": "III"},
            ),
            Column("riss_stage", "code", codes=_identity("I", "II", "III")),
            Column("ldh_elevated", "code", codes=YES_NO),
            *FISH_COLS,
            Column("heavy_chain", "code", codes=_identity("IgG", "IgA", "IgD", "IgE", "IgM", "none")),
            Column("light_chain", "code", codes=_identity("kappa", "lambda")),
        ),
    ),
    "transplants": FileContract(
        "transplants",
        "transplant_id",
        "transplant",
        (
            Column("transplant_id", "id", True),
            Column("patient_id", "id", True, description="must exist in patients.csv"),
            Column("transplant_date", "date", True, description="stem-cell infusion (day 0)"),
            Column(
                "transplant_type",
                "code",
                True,
                {
                    "autologous": "autologous",
                    "auto": "autologous",
                    "allogeneic": "allogeneic",
                    "allo": "allogeneic",
                },
            ),
            Column("conditioning_agent", "text", max_length=80, description="e.g. melphalan"),
            Column("conditioning_dose_mg_m2", "number", description="> 0"),
            Column("planned_tandem", "code", codes=YES_NO),
            Column("response_before", "code", codes=RESPONSES),
            Column("response_day100", "code", codes=RESPONSES),
        ),
    ),
    "treatments": FileContract(
        "treatments",
        "treatment_id",
        "treatment",
        (
            Column("treatment_id", "id", True),
            Column("patient_id", "id", True, description="must exist in patients.csv"),
            Column("drug", "text", True, description="generic or brand name, any case"),
            Column("start_date", "date", True),
            Column("end_date", "date", description=">= start_date; empty = ongoing"),
            Column("dose_mg", "number", description="> 0"),
            Column(
                "intent",
                "code",
                codes={
                    **_identity(
                        "induction", "consolidation", "maintenance", "salvage", "conditioning", "mobilisation"
                    ),
                    "mobilization": "mobilisation",
                },
                description="mobilisation (synonym mobilization): stem-cell mobilisation, part of line 1",
            ),
            Column(
                "stop_reason",
                "code",
                codes=_identity(
                    "completed",
                    "progression",
                    "toxicity",
                    "patient_choice",
                    "death",
                    "other",
                    "ongoing",
                ),
            ),
        ),
    ),
    "disease_events": FileContract(
        "disease_events",
        "event_id",
        "event",
        (
            Column("event_id", "id", True),
            Column("patient_id", "id", True, description="must exist in patients.csv"),
            Column("event_date", "date", True),
            Column(
                "event_type",
                "code",
                True,
                _identity("response_assessment", "progression", "relapse"),
            ),
            Column("response", "code", codes=RESPONSES, description="expected for response_assessment"),
        ),
    ),
    "follow_up": FileContract(
        "follow_up",
        "patient_id",
        "patient",
        (
            Column("patient_id", "id", True, description="one row per patient"),
            Column("last_contact_date", "date", True),
            Column("vital_status", "code", True, _identity("alive", "dead")),
            Column("death_date", "date", description="required if and only if dead"),
            Column(
                "cause_of_death",
                "code",
                codes=_identity(
                    "myeloma",
                    "treatment_related",
                    "infection",
                    "second_malignancy",
                    "other",
                    "unknown",
                ),
            ),
        ),
    ),
}

FILE_ORDER = ("patients", "follow_up", "transplants", "treatments", "disease_events")

# Columns that look like direct identifiers: never read into the registry.
IDENTIFIER_NAMES = {
    "name",
    "first_name",
    "last_name",
    "surname",
    "given_name",
    "full_name",
    "patient_name",
    "maiden_name",
    "address",
    "street",
    "postcode",
    "zip",
    "zip_code",
    "postal_code",
    "phone",
    "telephone",
    "mobile",
    "email",
    "e_mail",
    "ssn",
    "social_security_number",
    "national_id",
    "nhs_number",
    "health_card_number",
    "insurance_number",
    "passport",
    "mrn_raw",
    "mrn",
    "medical_record_number",
}
IDENTIFIER_FRAGMENTS = ("name", "address", "phone", "email", "ssn", "passport", "national_id")


def looks_like_identifier(column: str) -> bool:
    return column in IDENTIFIER_NAMES or any(f in column for f in IDENTIFIER_FRAGMENTS)


# --------------------------------------------------------------------------- Pandera models
# They validate the typed frame the pre-parser produces. Nullable code columns ignore nulls.
def _codes(file: str, column: str) -> list[str]:
    return CONTRACTS[file].column(column).allowed


def _len_ok(max_len: int):
    return pa.Check(lambda s: s.str.len() <= max_len, name=f"at_most_{max_len}_characters")


class _Base(pa.DataFrameModel):
    class Config:
        strict = False
        coerce = False


class PatientsModel(_Base):
    patient_id: Series[str] = pa.Field(nullable=False, str_length={"max_value": MAX_ID_LENGTH})
    sex: Series[str] = pa.Field(nullable=False, isin=_codes("patients", "sex"))
    birth_date: Series[pd.Timestamp] = pa.Field(nullable=False)
    diagnosis_date: Series[pd.Timestamp] = pa.Field(nullable=False)
    iss_stage: Series[str] = pa.Field(nullable=True, isin=_codes("patients", "iss_stage"))
    riss_stage: Series[str] = pa.Field(nullable=True, isin=_codes("patients", "riss_stage"))
    ldh_elevated: Series[str] = pa.Field(nullable=True, isin=list(YES_NO.values()))
    del17p: Series[str] = pa.Field(nullable=True, isin=sorted(set(FISH.values())))
    t_4_14: Series[str] = pa.Field(nullable=True, isin=sorted(set(FISH.values())))
    t_14_16: Series[str] = pa.Field(nullable=True, isin=sorted(set(FISH.values())))
    gain_1q: Series[str] = pa.Field(nullable=True, isin=sorted(set(FISH.values())))
    heavy_chain: Series[str] = pa.Field(nullable=True, isin=_codes("patients", "heavy_chain"))
    light_chain: Series[str] = pa.Field(nullable=True, isin=_codes("patients", "light_chain"))


class TransplantsModel(_Base):
    transplant_id: Series[str] = pa.Field(nullable=False, str_length={"max_value": MAX_ID_LENGTH})
    patient_id: Series[str] = pa.Field(nullable=False, str_length={"max_value": MAX_ID_LENGTH})
    transplant_date: Series[pd.Timestamp] = pa.Field(nullable=False)
    transplant_type: Series[str] = pa.Field(nullable=False, isin=_codes("transplants", "transplant_type"))
    conditioning_agent: Series[str] = pa.Field(nullable=True, str_length={"max_value": 80})
    conditioning_dose_mg_m2: Series[float] = pa.Field(nullable=True, gt=0)
    planned_tandem: Series[str] = pa.Field(nullable=True, isin=list(YES_NO.values()))
    response_before: Series[str] = pa.Field(nullable=True, isin=sorted(set(RESPONSES.values())))
    response_day100: Series[str] = pa.Field(nullable=True, isin=sorted(set(RESPONSES.values())))


class TreatmentsModel(_Base):
    treatment_id: Series[str] = pa.Field(nullable=False, str_length={"max_value": MAX_ID_LENGTH})
    patient_id: Series[str] = pa.Field(nullable=False, str_length={"max_value": MAX_ID_LENGTH})
    drug: Series[str] = pa.Field(nullable=False, str_length={"max_value": MAX_TEXT_LENGTH})
    start_date: Series[pd.Timestamp] = pa.Field(nullable=False)
    end_date: Series[pd.Timestamp] = pa.Field(nullable=True)
    dose_mg: Series[float] = pa.Field(nullable=True, gt=0)
    intent: Series[str] = pa.Field(nullable=True, isin=_codes("treatments", "intent"))
    stop_reason: Series[str] = pa.Field(nullable=True, isin=_codes("treatments", "stop_reason"))


class DiseaseEventsModel(_Base):
    event_id: Series[str] = pa.Field(nullable=False, str_length={"max_value": MAX_ID_LENGTH})
    patient_id: Series[str] = pa.Field(nullable=False, str_length={"max_value": MAX_ID_LENGTH})
    event_date: Series[pd.Timestamp] = pa.Field(nullable=False)
    event_type: Series[str] = pa.Field(nullable=False, isin=_codes("disease_events", "event_type"))
    response: Series[str] = pa.Field(nullable=True, isin=sorted(set(RESPONSES.values())))


class FollowUpModel(_Base):
    patient_id: Series[str] = pa.Field(nullable=False, str_length={"max_value": MAX_ID_LENGTH})
    last_contact_date: Series[pd.Timestamp] = pa.Field(nullable=False)
    vital_status: Series[str] = pa.Field(nullable=False, isin=_codes("follow_up", "vital_status"))
    death_date: Series[pd.Timestamp] = pa.Field(nullable=True)
    cause_of_death: Series[str] = pa.Field(nullable=True, isin=_codes("follow_up", "cause_of_death"))


MODELS: dict[str, type[pa.DataFrameModel]] = {
    "patients": PatientsModel,
    "transplants": TransplantsModel,
    "treatments": TreatmentsModel,
    "disease_events": DiseaseEventsModel,
    "follow_up": FollowUpModel,
}
