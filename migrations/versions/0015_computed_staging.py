"""computed staging

The R-ISS and R2-ISS computed by the registry from ISS, LDH and FISH, stored beside the
recorded R-ISS; existing patients are computed here from the components already stored.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from alembic import op

from registry.core.staging import COMPONENTS, stages

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("patients", sa.Column("riss_computed", sa.String(3), nullable=True))
    op.add_column("patients", sa.Column("r2iss_computed", sa.String(3), nullable=True))
    conn = op.get_bind()
    patients = sa.table(
        "patients",
        sa.column("patient_key"),
        sa.column("riss_computed"),
        sa.column("r2iss_computed"),
        *(sa.column(c) for c in COMPONENTS),
    )
    # one distinct combination of components at a time: a few hundred at most, whatever the size
    combos = conn.execute(sa.select(*(patients.c[c] for c in COMPONENTS)).distinct()).all()
    if not combos:
        return
    frame = pd.DataFrame([tuple(r) for r in combos], columns=list(COMPONENTS), dtype=object)
    riss, r2iss = stages(frame)
    for row, r, r2 in zip(frame.itertuples(index=False, name=None), riss, r2iss, strict=True):
        if r is None and r2 is None:
            continue
        match = sa.and_(
            *(
                patients.c[c].is_(None) if v is None else patients.c[c] == v
                for c, v in zip(COMPONENTS, row, strict=True)
            )
        )
        conn.execute(sa.update(patients).where(match).values(riss_computed=r, r2iss_computed=r2))


def downgrade() -> None:
    op.drop_column("patients", "r2iss_computed")
    op.drop_column("patients", "riss_computed")
