"""the summary's last record date

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08 02:30:00

``patient_summaries.last_record_date``: the latest date of any current treatment (start or end),
transplant or disease event of the patient, written by the derivation. Every cohort read grouped
the treatments, events and transplants of every patient to find it (the largest table read for
one date a patient: a fifth of the lenalidomide cohort's query at 20,000 patients on
PostgreSQL); it is filled here for the patients already derived, from the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LATEST = """
SELECT patient_key, MAX(d) AS d FROM (
    SELECT patient_key, MAX(start_date) AS d FROM treatments WHERE is_current = TRUE GROUP BY patient_key
    UNION ALL SELECT patient_key, MAX(end_date) FROM treatments WHERE is_current = TRUE GROUP BY patient_key
    UNION ALL SELECT patient_key, MAX(event_date) FROM disease_events WHERE is_current = TRUE
    GROUP BY patient_key
    UNION ALL SELECT patient_key, MAX(transplant_date) FROM transplants WHERE is_current = TRUE
    GROUP BY patient_key
) x GROUP BY patient_key
"""


def upgrade() -> None:
    with op.batch_alter_table("patient_summaries") as batch_op:
        batch_op.add_column(sa.Column("last_record_date", sa.Date(), nullable=True))
    op.execute(
        f"UPDATE patient_summaries SET last_record_date = latest.d FROM ({LATEST}) latest "
        "WHERE latest.patient_key = patient_summaries.patient_key"
    )


def downgrade() -> None:
    with op.batch_alter_table("patient_summaries") as batch_op:
        batch_op.drop_column("last_record_date")
