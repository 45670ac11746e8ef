"""One spec module per input file. ``SPECS`` lists them in load order (a file after the ones
its rules check against: patients, then follow-up, then the rest). Adding a file means a
spec module here, its model and migration, and the synthetic generator's rows."""

from __future__ import annotations

from etl.specs import disease_events, follow_up, patients, transplants, treatments
from etl.specs.base import ROOT, FileSpec, RowContext, RuleContext

SPECS: dict[str, FileSpec] = {
    s.SPEC.name: s.SPEC for s in (patients, follow_up, transplants, treatments, disease_events)
}
FILE_ORDER = tuple(SPECS)

__all__ = ["FILE_ORDER", "ROOT", "SPECS", "FileSpec", "RowContext", "RuleContext"]
