"""The wheel holds the whole tree: every module, migration, template and data file.

An editable install (what `make test` uses) finds modules in the checkout whatever the wheel
holds, so this builds the wheel and compares its listing with the tree. `.ci/wheel-smoke`
installs the same wheel into a fresh environment and runs the commands from another folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _tree_files() -> set[str]:
    """What the wheel must hold, by its path inside the wheel."""
    wanted: set[str] = set()
    for top, inside in (
        ("registry", "registry"),
        ("etl", "etl"),
        ("jobs", "jobs"),
        ("migrations", "registry_migrations"),
    ):
        for path in (ROOT / top).rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            wanted.add(f"{inside}/{path.relative_to(ROOT / top).as_posix()}")
    return wanted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # a copy of what the build reads: setuptools reuses a checkout's build/ folder, whose stale
    # files would hide a package the discovery misses
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for top in ("registry", "etl", "jobs", "migrations"):
        shutil.copytree(ROOT / top, source / top, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, cwd=source, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (found,) = out.glob("*.whl")
    return found


def test_every_file_of_the_tree_is_in_the_wheel(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_tree_files() - names)
    assert not missing, f"not in the wheel: {missing}"
    # the cli package (missed once by a hand-written list) and the entry point
    assert "registry/cli/__init__.py" in names and "registry/__main__.py" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "registry = registry.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_the_wheel_holds_nothing_from_outside_the_packages(wheel: Path) -> None:
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"registry", "etl", "jobs", "registry_migrations", "mm_registry-0.1.0.dist-info"}


def test_the_license_is_an_spdx_expression(wheel: Path) -> None:
    meta = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "License-Expression: Apache-2.0" in text
