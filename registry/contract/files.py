"""The input files of an export bundle (docs/input-contract.md), in load order — a file comes
after the ones its rules check against (patients, then follow-up, then the rest) — each with
its columns: the column catalogue every layer reads (validation builds its Pandera schemas from
it, the rule catalogue its scopes, the docs their tables, the generator its headers)."""

from __future__ import annotations

from dataclasses import dataclass

from registry.contract.columns import FISH, RESPONSES, YES_NO, Column, identity
from registry.core.labs import NAMES as LAB_TEST_NAMES


@dataclass(frozen=True)
class InputFile:
    """One input file of the contract."""

    name: str  # the file's name without .csv
    id_column: str  # its source identifier (never stored: pseudonymised)
    namespace: str  # the <file> part of the pseudonym recipe (site:namespace:id)
    table: str  # the registry table its records are loaded into
    columns: tuple[Column, ...] = ()
    optional: bool = False  # a bundle may leave it out (then nothing of it is retired)
    dates_beyond_cutoff: bool = False  # dates after the data cutoff are kept (and censored)

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    @property
    def is_root(self) -> bool:
        """The patients file: every other file's rows belong to one of its patients."""
        return self.name == ROOT

    @property
    def required(self) -> list[str]:
        return [c.name for c in self.columns if c.required]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def source_ids(self) -> dict[str, str]:
        """The file's source-id columns and the pseudonym namespace of each: its patient's and
        its own (the same column for the patients and follow-up files)."""
        return {PATIENT_ID.name: ROOT_NAMESPACE, self.id_column: self.namespace}

    def has(self, kind: str) -> bool:
        """Whether a column of this kind (id, date, number, code, text) is in the file."""
        return any(c.kind == kind for c in self.columns)


PATIENT_ID = Column("patient_id", "id", True, description="must exist in patients.csv")
ROOT_NAMESPACE = "patient"  # the pseudonym namespace of a patient's id, in every file
FISH_COLUMNS = ("del17p", "t_4_14", "t_14_16", "gain_1q")

PATIENTS = (
    Column("patient_id", "id", True, description="source identifier (often the MRN)"),
    Column("sex", "code", True, {"f": "F", "female": "F", "m": "M", "male": "M", "u": "U", "unknown": "U"}),
    Column("birth_date", "date", True),
    Column("diagnosis_date", "date", True, description="multiple myeloma diagnosis"),
    Column("iss_stage", "code", codes={"i": "I", "ii": "II", "iii": "III", "1": "I", "2": "II", "3": "III"}),
    Column("riss_stage", "code", codes=identity("I", "II", "III")),
    Column("ldh_elevated", "code", codes=YES_NO),
    *(Column(n, "code", codes=FISH, description="FISH result; empty = not recorded") for n in FISH_COLUMNS),
    Column("heavy_chain", "code", codes=identity("IgG", "IgA", "IgD", "IgE", "IgM", "none")),
    Column("light_chain", "code", codes=identity("kappa", "lambda")),
)
FOLLOW_UP = (
    Column("patient_id", "id", True, description="one row per patient"),
    Column("last_contact_date", "date", True),
    Column("vital_status", "code", True, identity("alive", "dead")),
    Column("death_date", "date", description="required if and only if dead"),
    Column(
        "cause_of_death",
        "code",
        codes=identity("myeloma", "treatment_related", "infection", "second_malignancy", "other", "unknown"),
    ),
)
TRANSPLANTS = (
    Column("transplant_id", "id", True),
    PATIENT_ID,
    Column("transplant_date", "date", True, description="stem-cell infusion (day 0)"),
    Column(
        "transplant_type",
        "code",
        True,
        {"autologous": "autologous", "auto": "autologous", "allogeneic": "allogeneic", "allo": "allogeneic"},
    ),
    Column("conditioning_agent", "text", max_length=80, description="e.g. melphalan"),
    Column("conditioning_dose_mg_m2", "number", description="> 0", positive=True),
    Column("planned_tandem", "code", codes=YES_NO),
    Column("response_before", "code", codes=RESPONSES),
    Column("response_day100", "code", codes=RESPONSES),
)
TREATMENTS = (
    Column("treatment_id", "id", True),
    PATIENT_ID,
    Column("drug", "text", True, description="generic or brand name, any case"),
    Column("start_date", "date", True),
    Column("end_date", "date", description=">= start_date; empty = ongoing"),
    Column("dose_mg", "number", description="> 0", positive=True),
    Column(
        "intent",
        "code",
        codes={
            **identity(
                "induction", "consolidation", "maintenance", "salvage", "conditioning", "mobilisation"
            ),
            "mobilization": "mobilisation",
        },
        description="mobilisation (synonym mobilization): stem-cell mobilisation, part of line 1",
    ),
    Column(
        "stop_reason",
        "code",
        codes=identity("completed", "progression", "toxicity", "patient_choice", "death", "other", "ongoing"),
    ),
)
DISEASE_EVENTS = (
    Column("event_id", "id", True),
    PATIENT_ID,
    Column("event_date", "date", True),
    Column("event_type", "code", True, identity("response_assessment", "progression", "relapse")),
    Column("response", "code", codes=RESPONSES, description="expected for response_assessment"),
)
LABS = (
    Column("lab_id", "id", True),
    PATIENT_ID,
    Column("sample_date", "date", True),
    Column("test", "code", True, LAB_TEST_NAMES, description="the test (synonyms accepted, any case)"),
    Column(
        "value",
        "text",
        True,
        max_length=64,
        description="a number; positive or negative (immunofixation); <x or not detected (0: M-protein)",
    ),
    Column("unit", "text", max_length=16, description="required for numbers; converted to the test's unit"),
)

ROOT = "patients"
INPUT_FILES: tuple[InputFile, ...] = (
    InputFile("patients", "patient_id", ROOT_NAMESPACE, "patients", PATIENTS),
    # one row a patient, keyed as it; a later last contact is kept and censored at the cutoff
    InputFile("follow_up", "patient_id", ROOT_NAMESPACE, "follow_up", FOLLOW_UP, dates_beyond_cutoff=True),
    InputFile("transplants", "transplant_id", "transplant", "transplants", TRANSPLANTS),
    InputFile("treatments", "treatment_id", "treatment", "treatments", TREATMENTS),
    InputFile("disease_events", "event_id", "event", "disease_events", DISEASE_EVENTS),
    InputFile("labs", "lab_id", "lab", "labs", LABS, optional=True),
)
FILE_NAMES: tuple[str, ...] = tuple(f.name for f in INPUT_FILES)
CHILD_FILES: tuple[str, ...] = tuple(f.name for f in INPUT_FILES if not f.is_root)
OPTIONAL_FILES: tuple[str, ...] = tuple(f.name for f in INPUT_FILES if f.optional)
_BY_NAME = {f.name: f for f in INPUT_FILES}


def input_file(name: str) -> InputFile:
    """The contract's entry of an input file (KeyError for a name it does not have)."""
    return _BY_NAME[name]
