"""Data flow one way: the import-linter contracts in pyproject.toml (the layers from the CLI
down to ``registry.core``, no click in library code, no database in statistics) hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_only_the_settings_module_reads_the_environment() -> None:
    """Configuration is read in one place (registry/core/config.py) and passed in: no other
    library module reads an environment variable."""
    import ast

    readers = []
    for path in sorted([*ROOT.glob("registry/**/*.py"), *ROOT.glob("etl/**/*.py")]):
        if path == ROOT / "registry" / "core" / "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert readers == []


def _library_files() -> list[Path]:
    return sorted(p for d in ("registry", "etl", "jobs") for p in ROOT.glob(f"{d}/**/*.py"))


def test_no_library_function_is_over_complexity_20_and_no_module_over_600_lines() -> None:
    """The limits the architecture keeps (docs/architecture.md): radon's cyclomatic complexity
    of every function and method at most 20 (ruff's C901 counts a little differently), and no
    module longer than 600 lines."""
    from radon.complexity import cc_visit

    over = [
        f"{path.relative_to(ROOT)}:{block.lineno} {block.name} ({block.complexity})"
        for path in _library_files()
        for block in cc_visit(path.read_text(encoding="utf-8"))
        if block.complexity > 20
    ]
    assert over == []
    long = [
        f"{p.relative_to(ROOT)} ({n})"
        for p in _library_files()
        for n in [len(p.read_text().splitlines())]
        if n > 600
    ]
    assert long == []
