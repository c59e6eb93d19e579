"""``cancel`` takes the many-row writers' one lock order (issue 14 §2), so it cannot deadlock with a
pack's heartbeat on Postgres. Before: its single ``UPDATE ... WHERE sweep_id = ...`` locked the rows in
the plan's order and Postgres aborted one side of a concurrent cancel and ``renew_pack``."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from tests.helpers import record_figure, run_at_once
from xorjobs.spec import validate_spec
from xorjobs.store import control
from xorjobs.store.claims import claim_job
from xorjobs.store.engine import write_session
from xorjobs.store.packs import claim_companions, renew_pack
from xorjobs.store.schema import upgrade
from xorjobs.store.sweeps import create_sweep
from xorjobs.store.tables import Job, JobState


@pytest.mark.postgres
def test_cancel_and_pack_heartbeat_on_the_same_rows_never_deadlock(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    upgrade(postgres_url)
    sweep = create_sweep(
        postgres_url, validate_spec({"variants": ["nn"], "seeds": list(range(512)), "steps": 300})
    )
    job_ids = [job.job_id for job in sweep.jobs]
    leader = claim_job(postgres_url, job_ids[0], "w", 60, 3)
    assert leader is not None
    members = [leader, *claim_companions(postgres_url, leader, "w", 60, 3, limit=511)]
    assert len(members) == 512
    errors: list[BaseException] = []
    rounds = 100  # about 5 s; the code before this fix deadlocked in 1 to 3 of them
    for _ in range(rounds):
        with write_session(postgres_url) as session:  # the pack running again, as it was before the cancel
            session.execute(update(Job).values(state=JobState.RUNNING, finished_at=None))
        errors += run_at_once(
            lambda: control.cancel(postgres_url, sweep.sweep_id),
            lambda: renew_pack(postgres_url, members, 60),
        )
        # Whichever side waited, the cancel took every row (an aborted cancel leaves them running).
        assert control.cancel(postgres_url, sweep.sweep_id) == [] or errors
    retried = [record for record in caplog.records if "transient store error" in record.getMessage()]
    record_figure("cancel_vs_pack_heartbeat_deadlocks_in_100_rounds", len(errors) + len(retried))
    assert errors == []
    # Not merely retried: with one lock order there is no deadlock to retry.
    assert retried == []
