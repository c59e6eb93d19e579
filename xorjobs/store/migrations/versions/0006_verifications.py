"""verifications: the requests and reports of POST /jobs/{id}/verify (issue 12 §6)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

The API stores a request and waits; a worker (which has torch) re-runs the job solo and stores the
report here, so API and worker share only the store and the broker. Rows go with their job (ON DELETE
CASCADE). New table only: nothing to derive for existing stores.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verifications",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("device", sa.String(length=10), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report_json", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_status", sa.SmallInteger(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_verifications_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("verifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verifications_job_id"))
    op.drop_table("verifications")
