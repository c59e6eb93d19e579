"""The filter flags of ``status``, ``results``, ``export`` and ``sweeps`` (issue 12, section 4), parsed
into the one filter model the API takes too (``xorjobs.filters``); errors name the flag, exit 2."""

from __future__ import annotations

from typing import Annotated

import typer

from xorjobs.filters import (
    SORT_KEYS,
    JobFilter,
    JobOrder,
    SweepFilter,
    cli_flag,
    parse_job_filter,
    parse_job_order,
    parse_sweep_filter,
)
from xorjobs.spec_tokens import parse_integer

States = Annotated[
    list[str] | None,
    typer.Option(
        "--state",
        metavar="STATES",
        help="Only jobs in these states (queued, running, succeeded, failed, "
        "cancelled); comma list, may repeat",
    ),
]
FilterVariants = Annotated[
    list[str] | None,
    typer.Option("--variant", metavar="VARIANTS", help="Only these variants; comma list, may repeat"),
]
FilterLrs = Annotated[
    list[str] | None,
    typer.Option(
        "--lr", metavar="LRS", help="Only these learning rates (as submitted); comma list, may repeat"
    ),
]
FilterSeeds = Annotated[
    list[str] | None,
    typer.Option(
        "--seed", metavar="SEEDS", help="Only these seeds: 777, a comma list, a range 1-10; may repeat"
    ),
]
Sort = Annotated[
    str | None,
    typer.Option(
        "--sort",
        metavar="KEY",
        help=f"Order the jobs by {', '.join(SORT_KEYS)} (ascending; missing values and NaN last)",
    ),
]
Descending = Annotated[bool, typer.Option("--desc", help="With --sort: descending")]
Limit = Annotated[str | None, typer.Option("--limit", metavar="N", help="At most N jobs (after --sort)")]
SweepStates = Annotated[
    list[str] | None,
    typer.Option(
        "--state",
        metavar="STATES",
        help="Only sweeps with a job in one of these states; comma list, may repeat",
    ),
]
NamePart = Annotated[
    str | None, typer.Option("--name", metavar="TEXT", help="Only sweeps whose name contains TEXT (any case)")
]


def job_filter(
    states: list[str] | None, variants: list[str] | None, lrs: list[str] | None, seeds: list[str] | None
) -> JobFilter:
    return parse_job_filter(states=states, variants=variants, lrs=lrs, seeds=seeds, name=cli_flag)


def job_order(sort: str | None, descending: bool, limit: str | None) -> JobOrder:
    count = None if limit is None else parse_integer(limit, "--limit")
    return parse_job_order(sort=sort, descending=descending, limit=count, name=cli_flag)


def sweep_filter(name_part: str | None, states: list[str] | None) -> SweepFilter:
    return parse_sweep_filter(name_part=name_part, states=states, name=cli_flag)


def shown_of(jobs: int, counts: dict[str, int]) -> str:
    """The title's note when a filter or limit hides jobs: `` (3 of 12 jobs shown)``."""
    total = sum(counts.values())
    return "" if jobs == total else f" ({jobs} of {total} jobs shown)"
