"""What a finished training run becomes in the store, for solo and packed training alike: a result
(``Outcome``) or a failure's text.

Its own module so ``worker.runner`` (which claims and reports) and ``worker.packing`` (which trains and
persists) both use it without importing each other.
"""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from xorjobs.store.results import Outcome

if TYPE_CHECKING:  # torch stays out of this module's imports (the Flower image has none)
    from xorjobs.models.engine import Engine
    from xorjobs.models.result import TrainResult


def outcome_of(
    result: TrainResult,
    written: int,
    torch_version: str,
    variant: str,
    engine: str | None = None,
    steps: int | None = None,
) -> Outcome:
    """What the store writes for a finished run: the costs not yet written, and the result; its final
    cost is the trained model's (``models.trained_cost``), whatever engine trained it. ``engine`` is
    the name of the engine that trained it (``models.engine.Engine.name``), kept with the job;
    ``steps`` the steps it was asked for (its steps trained are fewer when it stopped early)."""
    from xorjobs.models.trained_cost import trained_cost  # torch: only in a process that trained

    return Outcome(
        unwritten_costs=result.costs[written:],
        final_cost=trained_cost(variant, result.hypothesis),
        last_logged_cost=result.costs[-1][1] if result.costs else None,
        hypothesis=result.hypothesis,
        predicted=result.predicted,
        accuracy=result.accuracy,
        device_name=result.device_name,
        cpu_capability=result.cpu_capability,
        torch_version=torch_version,
        engine=engine,
        steps_trained=result.steps_trained(steps) if steps is not None else None,
        stopped_at_step=result.stopped_at_step,
        stop_reason=result.stop_reason,
    )


def describe_failure(error: BaseException) -> str:
    """A whole run's failure as stored with the job: the exception and the last lines of its traceback."""
    name = type(error).__name__
    if name == "SoftTimeLimitExceeded":
        return "time_limit: the job ran past XORJOBS_JOB_TIME_LIMIT_SECONDS"
    lines = traceback.format_exception(error)
    return f"{name}: {error}\n" + "".join(lines[-6:])


def member_failure_text(engine: Engine, error: BaseException) -> str:
    """One job's own failure (``PackedMemberError.errors``) as stored with it.

    A solo run's exception was raised by that job's own training, so its traceback is kept as for any
    failed run. A pack engine rebuilds the exception the member's solo run raises once the pack is done
    (``BCELoss`` on its NaN hypothesis): that traceback is the rebuild's, not the job's, so only the
    exception's line is stored.
    """
    if not engine.packs:
        return describe_failure(error)
    return f"{type(error).__name__}: {error}"
