"""Packed training: many jobs of one variant trained at once, each as its solo run trains it.

The public face of the pack engines. ``train_packed`` runs one (the bit-exact CPU engine of
``models.packed_exact`` on the CPU, the batched engine of ``models.packed_batched`` elsewhere, or the one
it is given); ``packing_is_exact`` is the CPU engine's start-up self-check (``models.self_check``).
The interface all engines share, solo included, is ``models.engine.Engine``; ``models.engines`` lists
them.
"""

from __future__ import annotations

from collections.abc import Sequence

from xorjobs.defaults import DEFAULT_LOG_EVERY, DEFAULT_STEPS
from xorjobs.models.engine import Engine, PackedMemberError, PackProgressCallback
from xorjobs.models.engines import EXACT, default_packing_engine, engine_named
from xorjobs.models.pack_loop import check_jobs
from xorjobs.models.result import TrainResult
from xorjobs.models.self_check import same_result
from xorjobs.models.stopping import NO_STOP, StopRule

__all__ = ["PackedMemberError", "packing_is_exact", "same_result", "train_packed"]


def train_packed(
    variant: str,
    seeds: Sequence[int],
    lrs: Sequence[float],
    steps: int = DEFAULT_STEPS,
    log_every: int = DEFAULT_LOG_EVERY,
    device: str = "cpu",
    on_progress: PackProgressCallback | None = None,
    progress_interval_s: float = 2.0,
    *,
    engine: str | Engine | None = None,
    stop: StopRule = NO_STOP,
) -> list[TrainResult]:
    """Train ``len(seeds)`` jobs of ``variant`` at once; job ``i`` has ``seeds[i]`` and ``lrs[i]``.

    On the CPU each result equals ``models.train(variant, seeds[i], lrs[i], steps, log_every)`` bit for
    bit (on the kernels ``packing_is_exact`` confirms). On CUDA the jobs run as plain batched maths in
    CUDA graphs (``models.packed_batched``): the same training, rounded as the GPU rounds. ``engine``
    picks one explicitly, by name ("exact", "batched": on the CPU it runs the GPU's maths there, for
    tests) or as an ``Engine`` (``BatchedEngine(graphs=False)``: eager CUDA steps). ``on_progress``
    gets, per job, the costs logged since its last call; it may raise to abort. A member whose solo run
    would raise (NaN hypothesis in an ``nn``/``wide_deep`` run) is reported by ``PackedMemberError``
    after the others finish. ``stop`` ends each member early (``models.stopping``).
    """
    check_jobs(variant, seeds, lrs)
    if engine is None:
        chosen = default_packing_engine(device)
    elif isinstance(engine, str):
        chosen = engine_named(engine)
    else:
        chosen = engine
    return chosen.train(
        variant,
        seeds,
        lrs,
        steps=steps,
        log_every=log_every,
        device=device,
        on_progress=on_progress,
        progress_interval_s=progress_interval_s,
        stop=stop,
    )


def packing_is_exact(variant: str, device: str = "cpu", steps: int = 300) -> bool:
    """Start-up self check: do packed runs equal solo ``models.train`` runs bit for bit on this machine?

    Packs a few jobs (mixed seeds/lrs, one diverging) for ``steps`` steps, logging every step, and
    compares every cost, the final hypothesis, the labels and the accuracy with solo runs. ``False`` on
    any difference (or on a device other than the CPU, where packing is not offered).
    """
    return EXACT.self_check(variant, device, steps)
