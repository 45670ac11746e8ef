"""Docs that are generated must be current; the import direction of the layers holds."""

from __future__ import annotations

import ast
from pathlib import Path

from registry.docgen import DOCS, data_model_markdown, input_contract_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_data_model_doc_is_generated_from_the_models() -> None:
    assert (DOCS / "data-model.md").read_text(encoding="utf-8") == data_model_markdown(), (
        "run: python -m registry.docgen"
    )


def test_input_contract_doc_is_generated_from_the_contract() -> None:
    assert (DOCS / "input-contract.md").read_text(encoding="utf-8") == input_contract_markdown(), (
        "run: python -m registry.docgen"
    )


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_data_flows_one_way() -> None:
    # statistics and reports never reach back into the ETL; library code never imports click
    for folder, forbidden in (
        ("registry/statistics", ("etl", "sqlalchemy", "click")),
        ("registry/reports", ("etl", "click")),
        ("registry/derive", ("click",)),
        ("etl", ("click", "registry.reports", "registry.cohorts")),
    ):
        for f in (ROOT / folder).glob("*.py"):
            for mod in _imports(f):
                assert not any(mod == b or mod.startswith(b + ".") for b in forbidden), (f, mod)


def test_every_cli_command_has_help_with_an_example() -> None:
    import click

    from registry.cli import cli

    def walk(cmd: click.Command, path: str) -> None:
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                walk(sub, f"{path} {name}")
        elif path.split()[-1:] != ["main"]:
            assert cmd.help and "Example" in cmd.help, path

    walk(cli, "registry")
