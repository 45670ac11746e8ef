"""The input files of an export bundle (docs/input-contract.md), in load order: a file comes
after the ones its rules check against (patients, then follow-up, then the rest)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputFile:
    """One input file of the contract."""

    name: str  # the file's name without .csv
    id_column: str  # its source identifier (never stored: pseudonymised)
    namespace: str  # the <file> part of the pseudonym recipe (site:namespace:id)
    table: str  # the registry table its records are loaded into
    optional: bool = False  # a bundle may leave it out (then nothing of it is retired)

    @property
    def filename(self) -> str:
        return f"{self.name}.csv"

    @property
    def is_root(self) -> bool:
        """The patients file: every other file's rows belong to one of its patients."""
        return self.name == ROOT


ROOT = "patients"
INPUT_FILES: tuple[InputFile, ...] = (
    InputFile("patients", "patient_id", "patient", "patients"),
    InputFile("follow_up", "patient_id", "patient", "follow_up"),  # one row a patient, keyed as it
    InputFile("transplants", "transplant_id", "transplant", "transplants"),
    InputFile("treatments", "treatment_id", "treatment", "treatments"),
    InputFile("disease_events", "event_id", "event", "disease_events"),
    InputFile("labs", "lab_id", "lab", "labs", optional=True),
)
FILE_NAMES: tuple[str, ...] = tuple(f.name for f in INPUT_FILES)
CHILD_FILES: tuple[str, ...] = tuple(f.name for f in INPUT_FILES if not f.is_root)
OPTIONAL_FILES: tuple[str, ...] = tuple(f.name for f in INPUT_FILES if f.optional)
_BY_NAME = {f.name: f for f in INPUT_FILES}


def input_file(name: str) -> InputFile:
    """The contract's entry of an input file (KeyError for a name it does not have)."""
    return _BY_NAME[name]
