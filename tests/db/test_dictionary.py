"""The data dictionary (``registry db dictionary``): every view column with its description and
every table column with its type, in each of the three formats, from the same entries."""

from __future__ import annotations

import csv
import io
import json

from click.testing import CliRunner

from registry.cli import cli
from registry.cohorts.definition import load_definition
from registry.cohorts.sql import view_columns, view_name
from registry.db.dictionary import dictionary
from registry.db.models import Base
from registry.db.views import VIEWS

DEFN = load_definition("lenalidomide-relapse")


def test_every_view_and_table_column_is_listed_once() -> None:
    entries = dictionary()
    views = [(e["object"], e["column"]) for e in entries if e["kind"] == "view"]
    tables = [(e["object"], e["column"]) for e in entries if e["kind"] == "table"]
    assert views == [(v.name, c) for v in VIEWS for c, _ in v.columns]
    assert sorted(tables) == sorted((t.name, c.name) for t in Base.metadata.sorted_tables for c in t.columns)
    assert all(e["description"] for e in entries if e["kind"] == "view")
    assert all(e["type"] and e["nullable"] in ("yes", "no") for e in entries if e["kind"] == "table")
    # every table column is described too (its ``doc`` in the model): a column added without
    # one fails here, not in an analyst's question
    assert [f"{e['object']}.{e['column']}" for e in entries if not e["description"]] == []


def test_the_three_formats_carry_the_same_rows() -> None:
    entries = dictionary()
    outputs = {}
    for fmt in ("md", "csv", "json"):
        res = CliRunner().invoke(cli, ["db", "dictionary", "--format", fmt])
        assert res.exit_code == 0, res.output
        outputs[fmt] = res.output
    shown = json.loads(outputs["json"])
    assert [e for e in shown if not e["object"].startswith("cohort_")] == entries
    assert list(csv.DictReader(io.StringIO(outputs["csv"]))) == [
        {k: str(v) for k, v in e.items()} for e in shown
    ]
    md_rows = [
        line for line in outputs["md"].splitlines() if line.startswith("| view") or line.startswith("| table")
    ]
    assert len(md_rows) == len(shown)
    assert "`v_patients` | `patient_key`" in outputs["md"]
    # the cohorts' views too, every column described
    cohort = [e for e in json.loads(outputs["json"]) if e["object"] == view_name(DEFN)]
    assert [e["column"] for e in cohort] == view_columns(DEFN) and all(e["description"] for e in cohort)
