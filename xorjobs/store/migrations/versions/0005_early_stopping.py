"""jobs: early stopping (issue 12 §3): each job's stopping rule, and where and why it stopped

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

``stop_below`` / ``stop_when_solved`` are the sweep's rule, copied onto each job at submit as steps and
log_every are (a pack only takes companions with the same rule). ``steps_trained``, ``stopped_at_step``
and ``stop_reason`` are written with the result and cleared by ``retry``. Rows stored before this revision
ran without a rule: ``stop_when_solved`` is false and ``stop_below`` NULL for them, and ``steps_trained``
stays NULL (readers take ``steps`` then: such a job trained all its steps).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("stop_below", sa.Double(), nullable=True))
        batch.add_column(
            sa.Column("stop_when_solved", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("steps_trained", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("stopped_at_step", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("stop_reason", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("stop_reason")
        batch.drop_column("stopped_at_step")
        batch.drop_column("steps_trained")
        batch.drop_column("stop_when_solved")
        batch.drop_column("stop_below")
