"""Synthetic, realistic export bundles: ``patient`` makes one patient's rows, ``bundle``
streams a whole bundle (and its truth files) to disk."""

from etl.synth.bundle import DEFAULT_CUTOFF, DEFAULT_PATIENTS, _category_counts, layout, write_bundle
from etl.synth.patient import GROUPS, generate_patient, patient_id

__all__ = [
    "DEFAULT_CUTOFF",
    "DEFAULT_PATIENTS",
    "GROUPS",
    "_category_counts",
    "generate_patient",
    "layout",
    "patient_id",
    "write_bundle",
]
