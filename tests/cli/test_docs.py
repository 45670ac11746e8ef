"""Docs that are generated must be current; every command has help with an example."""

from __future__ import annotations

from pathlib import Path

from registry.cli.docgen import generated_files

ROOT = Path(__file__).resolve().parents[2]


def test_generated_docs_are_current() -> None:
    stale = [p.name for p, text in generated_files().items() if p.read_text(encoding="utf-8") != text]
    assert not stale, f"stale: {stale}; run: python -m registry.cli.docgen"


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
