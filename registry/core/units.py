"""Units shared by every layer."""

DAYS_PER_MONTH = 30.4375
"""Days in an average month (365.25 / 12): survival times in days are reported in months."""
