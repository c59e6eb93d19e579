"""jobs.engine: the engine that trained each job (solo, exact, native, batched)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Written with the result (``store.results``), cleared by ``retry``. NULL for jobs stored before this
revision: which engine trained them was not recorded, and cannot be told from their numbers (the
engines that may store CPU results give solo's numbers bit for bit).
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("engine", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("engine")
