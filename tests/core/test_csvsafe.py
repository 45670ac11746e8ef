"""Every CSV the registry writes is safe to open in a spreadsheet: a text cell that would be
read as a formula gets a leading apostrophe; numbers, negative ones included, stay numbers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.core.csvsafe import safe_cell
from tests.etl.bundles import base_rows, write_bundle


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("\tx", "'\tx"),
        ("-5", "-5"),
        ("+1.5e3", "+1.5e3"),
        ("lenalidomide", "lenalidomide"),
        (12, 12),
        (None, None),
    ],
)
def test_formula_cells_are_neutralised_and_numbers_kept(value: object, expected: object) -> None:
    assert safe_cell(value) == expected


def test_the_quarantine_export_neutralises_a_hostile_value(sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["treatments"][7]["intent"] = "=1+1"
    runner = CliRunner()
    assert runner.invoke(cli, ["etl", "run", str(write_bundle(tmp_path / "b", rows))]).exit_code == 0
    res = runner.invoke(cli, ["etl", "quarantine"])
    (line,) = list(csv.DictReader(io.StringIO(res.output)))
    assert line["rule"] == "not_allowed" and line["value"] == "'=1+1"
