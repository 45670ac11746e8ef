"""``python -m tests.etl.new_file_flow FOLDER``: a new optional input file, ``notes.csv``, added
the way the architecture says a file is added — its contract entry (with its columns), a spec
module ``etl.specs.notes``, a model and its table — and nothing else; then a bundle with it is
loaded twice and what every layer made of it is printed as JSON for the test to check
(``tests/etl/test_specs.py``). Run in its own process: the contract is extended before anything
reads it, as a release adding the file would have it."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

from registry.contract import columns as contract_columns
from registry.contract import files as contract_files

Column = contract_columns.Column
NOTES = contract_files.InputFile(
    "notes",
    "note_id",
    "note",
    "notes",
    (
        Column("note_id", "id", True),
        contract_files.PATIENT_ID,
        Column("note_date", "date", True),
        Column("score", "number", description="> 0", positive=True),
        Column("kind", "code", codes=contract_columns.identity("clinic", "phone")),
    ),
    optional=True,
)


def _extend_contract() -> None:
    """The contract's entry for notes.csv, as a release would add it to files.py."""
    import registry.contract as package

    files = (*contract_files.INPUT_FILES, NOTES)
    derived = {
        "INPUT_FILES": files,
        "FILE_NAMES": tuple(f.name for f in files),
        "CHILD_FILES": tuple(f.name for f in files if not f.is_root),
        "OPTIONAL_FILES": tuple(f.name for f in files if f.optional),
    }
    for module in (contract_files, package):
        for name, value in derived.items():
            setattr(module, name, value)
    contract_files._BY_NAME["notes"] = NOTES


SPEC_MODULE = '''"""notes.csv: its model (models/clinical.py would hold it) and spec (etl/specs/notes.py)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import Date, Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from etl.specs.base import FileSpec, RowContext, RuleContext, iso, nullable
from registry.contract import input_file
from registry.db.models import Base
from registry.db.models.base import KEY
from registry.db.models.clinical import SourceRow


class Note(SourceRow, Base):
    __tablename__ = "notes"
    note_key: Mapped[str] = mapped_column(KEY, primary_key=True, doc="the note's pseudonym")
    patient_key: Mapped[str] = mapped_column(KEY, ForeignKey("patients.patient_key"), doc="its patient")
    note_date: Mapped[dt.date] = mapped_column(Date, doc="when")
    score: Mapped[float | None] = mapped_column(Float, doc="a score")
    kind: Mapped[str | None] = mapped_column(String(8), doc="clinic or phone")


def rules(c: RuleContext) -> None:
    c.not_after_end_of_follow_up("note_date")


def to_rows(valid: pd.DataFrame, ctx: RowContext) -> pd.DataFrame:
    out = pd.DataFrame(index=valid.index)
    out["note_key"] = ctx.pseudo.series("note", valid["note_id"])
    out["patient_key"] = ctx.pseudo.series("patient", valid["patient_id"])
    out["note_date"] = iso(valid["note_date"])
    out["score"] = nullable(valid["score"])
    out["kind"] = nullable(valid["kind"])
    return out


SPEC = FileSpec.of(input_file("notes"), model=Note, key="note_key", rules=rules, to_rows=to_rows)
'''


class _SpecFinder:
    """Finds ``etl.specs.notes`` in the test's folder (a release would ship the file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def find_spec(
        self, name: str, path: object, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "etl.specs.notes":
            return None
        return importlib.util.spec_from_file_location(name, self.path)


def main(folder: Path) -> dict[str, object]:
    _extend_contract()
    (folder / "notes_spec.py").write_text(SPEC_MODULE, encoding="utf-8")
    sys.meta_path.insert(0, _SpecFinder(folder / "notes_spec.py"))
    from etl.specs import SPECS

    note = SPECS["notes"].model

    from sqlalchemy import func, select

    from etl.pipeline import run_bundle
    from registry.cli.docgen import input_contract_markdown
    from registry.contract.rules import CATALOGUE
    from registry.db.database import make_engine, upgrade
    from registry.db.dictionary import dictionary
    from registry.db.models import QuarantinedRow
    from registry.quality.checks import FILES
    from tests.conftest import TEST_KEY
    from tests.etl.bundles import base_rows, write_bundle

    engine = make_engine(f"sqlite:///{folder / 'registry.db'}")
    upgrade(engine)
    note.__table__.create(engine)  # type: ignore[attr-defined]  # its migration, in a release
    rows = base_rows()
    rows["notes"] = [
        {
            "note_id": "N1",
            "patient_id": "MRN-0001",
            "note_date": "2020-01-05",
            "score": "2.5",
            "kind": "clinic",
        },
        {"note_id": "N2", "patient_id": "MRN-0002", "note_date": "2019-03-01", "kind": "phone"},
        {"note_id": "N3", "patient_id": "MRN-0001", "note_date": "2020-02-30"},  # no such day
        {"note_id": "N4", "patient_id": "MRN-0001", "note_date": "2020-01-05", "score": "-1"},
        {"note_id": "N5", "patient_id": "MRN-0001", "note_date": "2020-01-05", "kind": "visit"},
        {"note_id": "N6", "patient_id": "MRN-9999", "note_date": "2020-01-05"},  # no such patient
        {"note_id": "N7", "patient_id": "MRN-0001", "note_date": "2026-12-01"},  # after the cutoff
        {"note_id": "N8", "patient_id": "MRN-0001", "note_date": "2020-01-05", "score": "1e9"},
    ]
    key = TEST_KEY.encode()
    first = run_bundle(engine, write_bundle(folder / "night1", rows), key)
    second = run_bundle(
        engine, write_bundle(folder / "night2", rows, {"exported_at": "2026-07-02T02:00:00+00:00"}), key
    )
    with engine.connect() as conn:
        loaded = conn.scalar(select(func.count()).select_from(note).where(note.is_current))  # type: ignore[attr-defined]
        reasons = sorted(
            r["rule"]
            for (data,) in conn.execute(select(QuarantinedRow.reasons).where(QuarantinedRow.file == "notes"))
            for r in (json.loads(data) if isinstance(data, str) else data)
        )
    return {
        "first": dataclasses.asdict(first.files["notes"]),
        "second_unchanged_file": second.files["notes"].unchanged_file,
        "loaded": loaded,
        "quarantine_rules": reasons,
        "rule_files": {str(code): "notes" in rule.files for code, rule in CATALOGUE.items()},
        "quality_files": list(FILES),
        "doc_mentions_notes": "notes.csv" in input_contract_markdown(),
        "dictionary_notes": sorted(
            e["column"] for e in dictionary() if e["object"] == "notes" and e["description"]
        ),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
