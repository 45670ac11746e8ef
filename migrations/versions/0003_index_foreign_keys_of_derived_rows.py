"""index the foreign keys checked when a patient's derived rows are deleted

Without them, deleting derived rows scans regimen_exposures, relapses and transplant_roles
once per deleted exposure or line: re-deriving every patient grew with the square of the
registry (5,000 patients: 54 s instead of 2.5 s on SQLite).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 14:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_regimen_exposures_exposure_id"), "regimen_exposures", ["exposure_id"])
    op.create_index(op.f("ix_relapses_line_id"), "relapses", ["line_id"])
    op.create_index(op.f("ix_transplant_roles_line_id"), "transplant_roles", ["line_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_transplant_roles_line_id"), table_name="transplant_roles")
    op.drop_index(op.f("ix_relapses_line_id"), table_name="relapses")
    op.drop_index(op.f("ix_regimen_exposures_exposure_id"), table_name="regimen_exposures")
