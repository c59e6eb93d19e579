"""Cost curves: each job's logged ``(step, cost)`` points, stored as one value per job (``curve_codec``).

Written in bulk (issue 11 §2). A 10,000-job sweep logs 1.01 M costs; as one row each they took the
store longer to write than the native engine took to train them, so since revision 0007 a job's curve is
one row, and a pack's write is one row per member. A write merges the new points into what the job's
attempt stored before (per step, so a chunk sent twice changes nothing) and replaces an older attempt's
curve. It runs inside the caller's transaction, after that has fenced the attempts it writes for, so a
stale attempt writes nothing, and the fence's row lock keeps two writers of one job from interleaving
their read and write. The rows go in bulk (``bulk_upsert``). Figures in ``bench/cost_writes.py`` and
``bench/cost_queries.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from xorjobs.defaults import IDS_PER_STATEMENT
from xorjobs.store.bulk_upsert import BulkUpsert, bulk_upsert
from xorjobs.store.curve_codec import Point, decode_curve, encode_curve, merge_points
from xorjobs.store.engine import write_session
from xorjobs.store.leases import renew_in_transaction
from xorjobs.store.retry import is_conflict_error, retrying
from xorjobs.store.tables import CostCurve

CostChunk = tuple[str, int, Sequence[Point]]
"""New costs of one job: ``(job_id, attempt, points)``, the points in step order."""
CurveRow = tuple[str, int, int, int, bytes]
"""One row of ``cost_curves``: job_id, attempt, points, last_step, curve."""

CURVE_UPSERT = BulkUpsert(
    sqlite=(
        "INSERT INTO cost_curves (job_id, attempt, points, last_step, curve) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt, points = excluded.points, "
        "last_step = excluded.last_step, curve = excluded.curve"
    ),
    pg_staging=(
        "CREATE TEMPORARY TABLE IF NOT EXISTS xorjobs_curves_in (LIKE cost_curves) ON COMMIT DELETE ROWS"
    ),
    pg_copy="COPY xorjobs_curves_in (job_id, attempt, points, last_step, curve) FROM STDIN (FORMAT BINARY)",
    pg_copy_types=("varchar", "int4", "int4", "int4", "bytea"),  # as cost_curves declares them
    pg_upsert=(
        "INSERT INTO cost_curves (job_id, attempt, points, last_step, curve) "
        "SELECT job_id, attempt, points, last_step, curve FROM xorjobs_curves_in "
        "ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt, points = excluded.points, "
        "last_step = excluded.last_step, curve = excluded.curve"
    ),
)
"""How ``CurveRow`` rows are written (``bulk_upsert``)."""


def write_costs(session: Session, chunks: Sequence[CostChunk]) -> None:
    """Merge each job's new points into its stored curve, in the session's transaction (which has
    fenced every ``(job_id, attempt)``): one read of the curves already stored and one bulk write."""
    chunks = [chunk for chunk in chunks if chunk[2]]
    if not chunks:
        return
    stored = _stored_curves(session, sorted({job_id for job_id, _, _ in chunks}))
    curves: dict[str, tuple[int, list[Point]]] = {}
    for job_id, attempt, points in chunks:
        earlier = curves.get(job_id) or stored.get(job_id)
        # Another attempt's curve is replaced, not merged: a new attempt trains from step 0 again.
        kept = earlier[1] if earlier is not None and earlier[0] == attempt else []
        curves[job_id] = (attempt, merge_points(kept, points))
    rows: list[CurveRow] = [
        (job_id, attempt, len(points), points[-1][0], encode_curve(points))
        for job_id, (attempt, points) in curves.items()
    ]
    bulk_upsert(session.connection(), CURVE_UPSERT, rows)


def _stored_curves(session: Session, job_ids: list[str]) -> dict[str, tuple[int, list[Point]]]:
    """``job_id -> (attempt, points)`` of the curves stored for ``job_ids`` (absent: none yet)."""
    stored: dict[str, tuple[int, list[Point]]] = {}
    for start in range(0, len(job_ids), IDS_PER_STATEMENT):
        statement = select(CostCurve.job_id, CostCurve.attempt, CostCurve.curve).where(
            CostCurve.job_id.in_(job_ids[start : start + IDS_PER_STATEMENT])
        )
        for job_id, attempt, curve in session.execute(statement):
            stored[job_id] = (attempt, decode_curve(curve))
    return stored


def record_costs(url: str, job_id: str, attempt: int, costs: Sequence[Point], lease_seconds: float) -> None:
    """Write a chunk of costs and renew the lease, in one transaction fenced on the attempt."""

    def record() -> None:
        with write_session(url) as session:
            renew_in_transaction(session, job_id, attempt, lease_seconds)
            write_costs(session, [(job_id, attempt, costs)])

    retrying(record, what=f"writing the costs of job {job_id}", retry_if=is_conflict_error)
