"""One spec module per input file of the contract (``registry/contract``, which lists the
files in load order: a file after the ones its rules check against). Adding a file means its
line in the contract, a spec module here, its model and migration, and the synthetic
generator's rows."""

from __future__ import annotations

import hashlib

from etl.specs import disease_events, follow_up, labs, patients, transplants, treatments
from etl.specs.base import ROOT, FileSpec, RowContext, RuleContext
from registry.contract import FILE_NAMES

_MODULES = (patients, follow_up, transplants, treatments, disease_events, labs)
# every file of the contract has its spec, in the contract's (load) order
SPECS: dict[str, FileSpec] = {
    name: next(m.SPEC for m in _MODULES if m.SPEC.name == name) for name in FILE_NAMES
}
assert len(SPECS) == len(_MODULES), "a spec module for a file the contract (registry/contract) does not list"
FILE_ORDER = FILE_NAMES


def _reading_version() -> str:
    """What reading a file depends on: the registry's version, the columns of every spec, the
    rule catalogue and the drug vocabulary. A file remembered under another reading version is
    read again even when its bytes did not change."""
    from etl.rules import CATALOGUE
    from registry import __version__
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
