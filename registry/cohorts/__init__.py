"""Cohort definitions as data (``*.toml`` beside this file), compiled to SQL for both engines."""
