"""Locking many job rows in one order, so two transactions that touch the same rows cannot deadlock.

An ``UPDATE ... WHERE id IN (...)`` locks rows in whatever order its plan visits them (the primary key's
index for one statement, the heap for another): the publisher's ``mark_published`` and a pack's
heartbeat did exactly that on the same 512 rows and Postgres aborted one of them in 7 of 20 rounds
(issue 14 §2). Every statement that writes many job rows first takes their locks here, ordered by id;
its UPDATE then finds them held already.

``FOR NO KEY UPDATE`` is the lock an UPDATE of non-key columns takes itself, so this blocks nothing
that the UPDATE would not (plain ``FOR UPDATE`` would also block the key-share locks that inserting a
job's cost curve takes on the job). SQLite needs none of this: ``BEGIN IMMEDIATE`` serialises writers.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from xorjobs.store.tables import Job


def lock_job_rows(session: Session, *conditions: ColumnElement[bool], skip_locked: bool = False) -> list[str]:
    """Lock the job rows matching ``conditions`` in id order; return their ids (in id order).

    ``skip_locked`` leaves out rows another transaction holds instead of waiting for them (the reaper:
    a partitioned worker's open transaction must not stall everyone's recovery).
    """
    if session.get_bind().dialect.name != "postgresql":
        return list(session.scalars(select(Job.id).where(*conditions).order_by(Job.id)))
    # COLLATE "C": byte order, the same as Python's ``sorted`` of these ASCII ids, so callers that chunk
    # a sorted list keep one order across chunks whatever the database's default collation.
    query = (
        select(Job.id)
        .where(*conditions)
        .order_by(Job.id.collate("C"))
        .with_for_update(key_share=True, skip_locked=skip_locked)
    )
    return list(session.scalars(query))
