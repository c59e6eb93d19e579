"""jobs: final_cost becomes the trained model's cost; the last logged cost keeps its own column

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Until 0002, ``final_cost`` held the cost at the last *logged* step (with ``--steps 10``, the untrained
step-0 cost). From 0002 it holds the cost of the trained model (the seed's criterion of the final
hypothesis, issue 12 section 4) and the old value lives on as ``last_logged_cost``.

Rows stored before this revision keep their value as ``last_logged_cost`` and get a NULL ``final_cost``:
the trained cost cannot be derived here bit for bit. It is a float32 torch computation on the stored
hypothesis, and migrations run in the API's process, which has no torch (nor may have).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("final_cost", new_column_name="last_logged_cost", existing_type=sa.Double())
        batch.alter_column(
            "final_cost_kind", new_column_name="last_logged_cost_kind", existing_type=sa.SmallInteger()
        )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("final_cost", sa.Double(), nullable=True))
        batch.add_column(sa.Column("final_cost_kind", sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("final_cost_kind")
        batch.drop_column("final_cost")
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("last_logged_cost", new_column_name="final_cost", existing_type=sa.Double())
        batch.alter_column(
            "last_logged_cost_kind", new_column_name="final_cost_kind", existing_type=sa.SmallInteger()
        )
