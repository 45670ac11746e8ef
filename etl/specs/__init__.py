"""One spec module per input file of the contract, named as the file (``registry/contract``
lists the files in load order, with their columns): how the ETL checks a file's rows beyond its
columns and maps them to its table. Adding a file means its entry in the contract, a spec module
here, its model and migration, and the synthetic generator's rows — no list here names it."""

from __future__ import annotations

import hashlib
import importlib

from etl.specs.base import FileSpec, RowContext, RuleContext
from registry.contract import FILE_NAMES, ROOT


def _spec(name: str) -> FileSpec:
    """The spec of the contract's file ``name``: module ``etl.specs.<name>``, its ``SPEC``."""
    spec = importlib.import_module(f"etl.specs.{name}").SPEC
    assert isinstance(spec, FileSpec) and spec.name == name, (
        f"etl/specs/{name}.py must define the SPEC of {name}"
    )
    return spec


# every file of the contract has its spec, in the contract's (load) order
SPECS: dict[str, FileSpec] = {name: _spec(name) for name in FILE_NAMES}
FILE_ORDER = FILE_NAMES


def _reading_version() -> str:
    """What reading a file depends on: the registry's version, the columns of every spec, the
    rule catalogue and the drug vocabulary. A file remembered under another reading version is
    read again even when its bytes did not change."""
    from registry import __version__
    from registry.contract.rules import CATALOGUE
    from registry.db.vocabulary import VOCABULARY_VERSION

    text = repr(
        (
            [
                (s.name, [(c.name, c.kind, c.required, sorted(c.codes.items())) for c in s.columns])
                for s in SPECS.values()
            ],
            sorted((str(r.code), str(r.severity), r.files) for r in CATALOGUE.values()),
            VOCABULARY_VERSION,
        )
    )
    return f"{__version__}+{hashlib.sha256(text.encode()).hexdigest()[:12]}"


READING_VERSION = _reading_version()

__all__ = ["FILE_ORDER", "READING_VERSION", "ROOT", "SPECS", "FileSpec", "RowContext", "RuleContext"]
