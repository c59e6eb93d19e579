"""cost_curves: each job's logged costs as one value, replacing the costs table's row per step (issue 11 §2)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A 10,000-job sweep logged 1.01 M rows in ``costs``, which took the store longer to write than the native
engine took to train them. ``cost_curves`` holds one row per job: the curve (``curve_codec``: steps and
float64 costs, NaN and inf as they are), the attempt that wrote it, and its point count and last step for
the aggregates. Existing rows are converted job by job, every row kept (a job whose rows came from two
attempts keeps them all, as every reader showed them, under the newest of those attempts); the downgrade
turns each curve back into rows.
"""

from collections.abc import Iterator
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from alembic import op

from xorjobs.store.curve_codec import decode_curve, encode_curve
from xorjobs.store.floats import decode_float, encode_float

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ROWS_PER_FETCH = 10_000
_INSERTS_PER_STATEMENT = 1_000

_costs = sa.table("costs", *(sa.column(name) for name in ("job_id", "step", "value", "kind", "attempt")))
_curves = sa.table(
    "cost_curves", *(sa.column(name) for name in ("job_id", "attempt", "points", "last_step", "curve"))
)


def upgrade() -> None:
    op.create_table(
        "cost_curves",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("curve", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id"),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_costs.c.job_id, _costs.c.step, _costs.c.value, _costs.c.kind, _costs.c.attempt).order_by(
            _costs.c.job_id, _costs.c.step
        ),
        execution_options={"yield_per": _ROWS_PER_FETCH},  # this statement's own: later DDL runs plainly
    )
    _insert_in_batches(connection, _curves, _curves_of(rows))
    op.drop_table("costs")


def _curves_of(rows: Any) -> Iterator[dict[str, Any]]:
    for job_id, job_rows in groupby(rows, key=lambda row: row[0]):
        points, attempt = [], 0
        for _, step, value, kind, row_attempt in job_rows:
            points.append((step, decode_float(value, kind)))
            attempt = max(attempt, row_attempt)
        yield {
            "job_id": job_id,
            "attempt": attempt,
            "points": len(points),
            "last_step": points[-1][0],
            "curve": encode_curve(points),
        }


def downgrade() -> None:
    op.create_table(
        "costs",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.Column("kind", sa.SmallInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "step"),
    )
    connection = op.get_bind()
    curves = connection.execute(
        sa.select(_curves.c.job_id, _curves.c.attempt, _curves.c.curve).order_by(_curves.c.job_id),
        execution_options={"yield_per": _ROWS_PER_FETCH // 100},
    )
    _insert_in_batches(connection, _costs, _rows_of(curves))
    op.drop_table("cost_curves")


def _rows_of(curves: Any) -> Iterator[dict[str, Any]]:
    for job_id, attempt, curve in curves:
        for step, cost in decode_curve(curve):
            value, kind = encode_float(cost)
            yield {"job_id": job_id, "step": step, "value": value, "kind": int(kind), "attempt": attempt}


def _insert_in_batches(
    connection: sa.Connection, table: sa.TableClause, rows: Iterator[dict[str, Any]]
) -> None:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= _INSERTS_PER_STATEMENT:
            connection.execute(table.insert(), batch)
            batch = []
    if batch:
        connection.execute(table.insert(), batch)
