"""Docs that are generated must be current; every command has help with an example."""

from __future__ import annotations

from pathlib import Path

from etl.docgen import DOCS, data_model_markdown, input_contract_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_data_model_doc_is_generated_from_the_models() -> None:
    assert (DOCS / "data-model.md").read_text(encoding="utf-8") == data_model_markdown(), (
        "run: python -m etl.docgen"
    )


def test_input_contract_doc_is_generated_from_the_contract() -> None:
    assert (DOCS / "input-contract.md").read_text(encoding="utf-8") == input_contract_markdown(), (
        "run: python -m etl.docgen"
    )


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
