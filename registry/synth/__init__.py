"""Synthetic, realistic export bundles: ``patient`` makes one patient's rows, ``bundle``
streams a whole bundle (and its truth files) to disk."""

from etl.extract import SITE_RE
from registry.synth.bundle import DEFAULT_CUTOFF, DEFAULT_PATIENTS, _category_counts, layout, write_bundle
from registry.synth.patient import DAYS_PER_MONTH, GROUPS, generate_patient, patient_id

__all__ = [
    "DAYS_PER_MONTH",
    "DEFAULT_CUTOFF",
    "DEFAULT_PATIENTS",
    "GROUPS",
    "SITE_RE",
    "_category_counts",
    "generate_patient",
    "layout",
    "patient_id",
    "write_bundle",
]
