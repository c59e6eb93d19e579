"""Cost rows: the logged (step, cost) pairs of a job, written idempotently per (job, step)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from xorjobs.store.engine import write_session
from xorjobs.store.floats import encode_float
from xorjobs.store.leases import renew_in_transaction
from xorjobs.store.retry import is_conflict_error, retrying
from xorjobs.store.tables import Cost


def cost_rows(job_id: str, attempt: int, costs: Sequence[tuple[int, float]]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for step, cost in costs:
        value, kind = encode_float(cost)
        rows.append({"job_id": job_id, "step": step, "value": value, "kind": int(kind), "attempt": attempt})
    return rows


def upsert_cost_rows(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Insert or overwrite cost rows of any number of jobs: idempotent per (job, step), so a retry never
    doubles a step. One statement, compiled once and sent with all rows as parameters (executemany,
    batched by SQLAlchemy's insertmanyvalues): a pack's 50,000 rows cost one round of compilation, not
    one per job."""
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    costs = Cost.__table__
    assert isinstance(costs, Table)
    statement = insert(costs)  # Core, not the ORM: its bulk path costs more than the database here
    statement = statement.on_conflict_do_update(
        index_elements=[costs.c.job_id, costs.c.step],
        set_={
            "value": statement.excluded.value,
            "kind": statement.excluded.kind,
            "attempt": statement.excluded.attempt,
        },
    )
    session.connection().execute(statement, list(rows))


def upsert_costs_in_transaction(
    session: Session, job_id: str, attempt: int, costs: Sequence[tuple[int, float]]
) -> None:
    """``upsert_cost_rows`` for one job's costs."""
    upsert_cost_rows(session, cost_rows(job_id, attempt, costs))


def record_costs(
    url: str, job_id: str, attempt: int, costs: Sequence[tuple[int, float]], lease_seconds: float
) -> None:
    """Write a chunk of costs and renew the lease, in one transaction fenced on the attempt."""
    rows = cost_rows(job_id, attempt, costs)

    def record() -> None:
        with write_session(url) as session:
            renew_in_transaction(session, job_id, attempt, lease_seconds)
            upsert_cost_rows(session, rows)

    retrying(record, what=f"writing the costs of job {job_id}", retry_if=is_conflict_error)
