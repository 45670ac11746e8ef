"""Data quality over the loaded registry: a catalogue of named checks (``checks``) and their
runs, stored with raw counts, re-applied thresholds and run-to-run comparison (``run``)."""
