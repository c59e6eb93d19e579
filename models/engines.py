"""Every training engine, by name, and which ones may pack on a device: where an engine is chosen.

A new engine is a module implementing ``models.engine.Engine`` plus its line here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from xorjobs.models.engine import Engine
from xorjobs.models.native_engine import NativeEngine
from xorjobs.models.packed_batched import BatchedEngine
from xorjobs.models.packed_exact import ExactPackedEngine
from xorjobs.models.solo import SoloEngine

SOLO: Engine = SoloEngine()
EXACT: Engine = ExactPackedEngine()
BATCHED: Engine = BatchedEngine()
NATIVE: Engine = NativeEngine()

ENGINES: Mapping[str, Engine] = {engine.name: engine for engine in (SOLO, EXACT, BATCHED, NATIVE)}


def engine_named(name: str) -> Engine:
    """The engine called ``name``; ``ValueError`` naming the choices for any other name."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}") from None


def packing_engines(device: str) -> tuple[Engine, ...]:
    """The engines that train packs on ``device``, preferred first.

    A caller packs with the first whose ``self_check`` passes (once per process and variant) and trains
    with ``SOLO`` when none does: on the CPU only an engine with solo's exact numbers may pack. The
    native engine comes first where it is built and its self-check passes (nn, wide_deep); the exact
    packed engine, slower with the same numbers, wherever it does not (and for backprop).
    """
    return (NATIVE, EXACT) if torch.device(device).type == "cpu" else (BATCHED,)


def default_packing_engine(device: str) -> Engine:
    """What ``train_packed`` runs when it is not told: exact on the CPU, batched elsewhere."""
    return EXACT if torch.device(device).type == "cpu" else BATCHED
