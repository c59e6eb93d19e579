"""The native engine (issue 11 §1): every member bit for bit equal to its solo ``models.train`` run, its
start-up self-check refusing a wrong primitive, and the exact packed engine where it cannot run.

The references are live: solo runs on this machine, and, for packs too large to run solo in a test, the
exact packed engine (itself checked against solo runs in test_packed.py) plus a sample of solo runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.ci import require
from xorjobs.models import train
from xorjobs.models.engine import CostChunk, PackedMemberError
from xorjobs.models.engines import EXACT
from xorjobs.models.initial_weights import sequential_init
from xorjobs.models.native_engine import NativeEngine, _initial_theta, _tape
from xorjobs.models.native_kernel import (
    ISA_AVX2,
    Kernel,
    KernelChoices,
    library_path,
    load_kernel,
    machine_choices,
)
from xorjobs.models.native_probes import failed_probes
from xorjobs.models.packed import same_result

NATIVE = NativeEngine()
LRS = (0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 1000.0)


@pytest.fixture(scope="module", autouse=True)
def _native_here() -> None:
    reason = NATIVE.unavailable_reason()
    require(reason is None, f"the native engine ({reason})")


def _jobs(count: int, first_seed: int = 0) -> tuple[list[int], list[float]]:
    seeds = [first_seed + 7919 * i for i in range(count)]
    return seeds, [LRS[i % len(LRS)] for i in range(count)]


def _assert_solo(variant: str, seeds: list[int], lrs: list[float], steps: int, log_every: int) -> None:
    results = NATIVE.train(variant, seeds, lrs, steps=steps, log_every=log_every)
    for seed, lr, result in zip(seeds, lrs, results, strict=True):
        solo = train(variant, seed, lr, steps=steps, log_every=log_every)
        assert same_result(result, solo), (variant, seed, lr, steps, log_every)
        assert result.cpu_capability == solo.cpu_capability


@pytest.mark.parametrize(
    ("variant", "size", "steps", "log_every"),
    [
        ("nn", 1, 300, 1),
        ("nn", 2, 257, 7),
        ("nn", 67, 120, 13),
        ("nn", 3, 1, 1),
        ("nn", 5, 0, 100),
        ("wide_deep", 1, 150, 1),
        ("wide_deep", 2, 101, 10),
        ("wide_deep", 67, 40, 3),
    ],
)
def test_members_equal_their_solo_runs(variant: str, size: int, steps: int, log_every: int) -> None:
    """Pack sizes 1, 2 and 67 (blocks of 32 jobs: one, part of one, three with a ragged end), 0 and 1
    steps, log intervals that do and do not divide the steps."""
    seeds, lrs = _jobs(size, first_seed=size)
    _assert_solo(variant, seeds, lrs, steps, log_every)


@pytest.mark.parametrize(("variant", "size", "steps"), [("nn", 1000, 30), ("wide_deep", 300, 12)])
def test_large_packs_equal_the_exact_engine_and_solo(variant: str, size: int, steps: int) -> None:
    """A pack of thousands' worth of blocks against the exact packed engine, plus solo runs of a sample."""
    seeds, lrs = _jobs(size, first_seed=11)
    native = NATIVE.train(variant, seeds, lrs, steps=steps, log_every=4)
    exact = EXACT.train(variant, seeds, lrs, steps=steps, log_every=4)
    assert all(same_result(a, b) for a, b in zip(native, exact, strict=True))
    for job in range(0, size, size // 12):
        assert same_result(native[job], train(variant, seeds[job], lrs[job], steps=steps, log_every=4))


def test_initial_weights_are_nn_linear_defaults() -> None:
    """The kernel's starting rows are what ``sequential_init`` (so ``nn.Linear``) gives each job."""
    seeds = [0, 1, 12345, 2**32 - 1, 2**32, 2**40, 2**63 - 1, *range(2, 300)]
    for variant in ("nn", "wide_deep"):
        tape = _tape(variant, machine_choices_or_fail(), 128)
        theta = _initial_theta(tape, seeds, 384)
        for job, seed in enumerate(seeds):
            expected = torch.cat(
                [t for w, b in sequential_init(tape.shapes, seed) for t in (w.reshape(-1), b)]
            )
            assert theta[:, job].tobytes() == expected.numpy().tobytes()  # bit for bit
        assert not theta[:, len(seeds) :].any()


@pytest.mark.parametrize(
    ("variant", "seeds", "lrs"), [("nn", [0, 4242, 2**33], [1.0, 0.1, 5.0]), ("wide_deep", [2**40], [20.0])]
)
def test_the_full_10001_steps_equal_solo(variant: str, seeds: list[int], lrs: list[float]) -> None:
    _assert_solo(variant, seeds, lrs, 10001, 100)


def test_a_member_solo_would_raise_for_fails_as_the_exact_engine_reports_it() -> None:
    """lr inf and NaN turn a member's parameters NaN, so its solo BCELoss raises; lr 1000 (and up to
    3e38) saturates the sigmoids instead and never raises. The others are untouched."""
    seeds, lrs = [1, 2, 3, 4, 5], [1000.0, math.inf, 0.5, math.nan, 3e38]
    with pytest.raises(PackedMemberError) as native:
        NATIVE.train("nn", seeds, lrs, steps=60, log_every=7)
    with pytest.raises(PackedMemberError) as exact:
        EXACT.train("nn", seeds, lrs, steps=60, log_every=7)
    assert sorted(native.value.errors) == sorted(exact.value.errors) == [1, 3]
    for job in (1, 3):
        assert str(native.value.errors[job]) == str(exact.value.errors[job])
        assert native.value.partial_costs[job] == exact.value.partial_costs[job]
        with pytest.raises(RuntimeError, match=str(native.value.errors[job])[:40]):
            train("nn", seeds[job], lrs[job], steps=60, log_every=7)
    for job in (0, 2, 4):
        result = native.value.results[job]
        assert result is not None
        assert same_result(result, train("nn", seeds[job], lrs[job], steps=60, log_every=7))


def test_progress_is_reported_per_job_and_may_abort() -> None:
    chunks: list[list[CostChunk]] = []
    seeds, lrs = _jobs(40)
    results = NATIVE.train(
        "nn", seeds, lrs, steps=3000, log_every=10, on_progress=chunks.append, progress_interval_s=0
    )
    assert len(chunks) > 1
    for job, result in enumerate(results):
        assert [pair for chunk in chunks for pair in chunk[job]] == result.costs

    class Abort(Exception):
        pass

    def abort(chunk: list[CostChunk]) -> None:
        raise Abort

    with pytest.raises(Abort):
        NATIVE.train("nn", seeds, lrs, steps=3000, log_every=10, on_progress=abort, progress_interval_s=0)


def test_bad_arguments_raise_before_training() -> None:
    with pytest.raises(ValueError, match="nn and wide_deep only"):
        NATIVE.train("backprop", [1], [0.1])
    with pytest.raises(ValueError, match="CPU only"):
        NATIVE.train("nn", [1], [0.1], device="cuda")
    with pytest.raises(ValueError, match="log_every"):
        NATIVE.train("nn", [1], [0.1], log_every=0)
    with pytest.raises(ValueError, match="learning rates"):
        NATIVE.train("nn", [1, 2], [0.1])
    assert NATIVE.train("nn", [], []) == []
    assert not NATIVE.self_check("backprop", "cpu", 10)
    assert not NATIVE.self_check("nn", "cuda", 10)


def test_the_self_check_passes_here() -> None:
    assert NATIVE.self_check("nn", "cpu", 100)
    assert NATIVE.self_check("wide_deep", "cpu", 60)


# --- A wrong primitive is refused --------------------------------------------------------------------


def machine_choices_or_fail() -> KernelChoices:
    choices = machine_choices()
    assert choices is not None
    return choices


def _kernel_and_choices() -> tuple[Kernel, KernelChoices]:
    kernel = load_kernel(library_path())
    choices = machine_choices()
    assert kernel is not None and choices is not None
    return kernel, choices


@pytest.mark.parametrize(
    ("wrong", "probe"),
    [
        ({"fused_sgd": False}, "sgd"),  # unfused SGD where ATen fuses
        ({"vector_chunk": 4}, "sigmoid_split"),  # the vector sigmoid where the scalar one belongs
        ({"sum_order": "pairwise"}, "sum4"),  # a reordered 4-term sum
    ],
)
def test_the_self_check_refuses_a_wrong_primitive(wrong: dict[str, object], probe: str) -> None:
    kernel, choices = _kernel_and_choices()
    wrong_choices = dataclasses.replace(choices, **wrong)  # type: ignore[arg-type]
    assert probe in failed_probes(kernel, wrong_choices, "nn")
    assert not NativeEngine(choices=wrong_choices).self_check("nn", "cpu", 20)


def test_a_probe_names_the_wrong_primitive_alone() -> None:
    """The end-to-end comparison only says that something differs; the probes say what (a worker's log
    names it), and the machine's own choices pass them all."""
    kernel, choices = _kernel_and_choices()
    assert failed_probes(kernel, dataclasses.replace(choices, fused_sgd=False), "nn") == ["sgd"]
    assert failed_probes(kernel, choices, "nn") == []
    assert failed_probes(kernel, choices, "wide_deep") == []


def test_the_avx2_code_path_is_exact_where_the_cpu_has_it() -> None:
    """Both instruction sets are compiled; on an AVX-512 machine the AVX2 path (8 lanes, SLEEF expf8,
    the same 32/8 split of a 4x10 activation at a 16-element chunk) is checked against solo too."""
    kernel, choices = _kernel_and_choices()
    if choices.isa == ISA_AVX2 or not kernel.supports(ISA_AVX2):
        pytest.skip("this machine runs the AVX2 path already, or lacks AVX2")
    avx2 = dataclasses.replace(choices, isa=ISA_AVX2, vector_chunk=16, sleef_symbol="Sleef_expf8_u10")
    assert failed_probes(kernel, avx2, "wide_deep") == []
    engine = NativeEngine(choices=avx2)
    seeds, lrs = _jobs(35)
    for result, seed, lr in zip(
        engine.train("nn", seeds, lrs, steps=80, log_every=3), seeds, lrs, strict=True
    ):
        assert same_result(result, train("nn", seed, lr, steps=80, log_every=3))


# --- Where it cannot run, the exact engine does ----------------------------------------------------


def test_without_the_library_the_exact_engine_packs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = NativeEngine(library=tmp_path / "no_such_kernel.so")
    assert missing.unavailable_reason() == "the native kernel is not built on this machine"
    with caplog.at_level(logging.INFO, logger="xorjobs.models.native_engine"):
        chosen = [e for e in (missing, EXACT) if e.self_check("nn", "cpu", 20)]
        assert not missing.self_check("nn", "cpu", 20)  # cached: said once
    assert chosen == [EXACT]
    assert [r.message for r in caplog.records] == [
        "native engine off for nn: the native kernel is not built on this machine"
    ]
    with pytest.raises(RuntimeError, match="not built"):
        missing.train("nn", [1], [0.1], steps=5)


def test_a_library_from_other_sources_is_refused() -> None:
    """Not the kernel, or one built from other sources (its ABI version differs): never run."""
    path = Path(torch.__file__).parent / "lib" / "libc10.so"  # a shared library, not the kernel
    stale = NativeEngine(library=path)
    assert (
        stale.unavailable_reason() == f"the native kernel at {path} does not load (built from other sources?)"
    )
    assert not stale.self_check("nn", "cpu", 20)


def test_the_capability_torch_reports_decides_the_path() -> None:
    """ATen forced to AVX2 runs the AVX2 kernel (and stays exact); forced to DEFAULT (unfused SGD,
    scalar 'vector' exp) there is no native path and the exact engine packs."""
    script = (
        "from xorjobs.models.native_engine import NativeEngine; from xorjobs.models.native_kernel import"
        " machine_choices; c = machine_choices(); e = NativeEngine();"
        " print(c.isa if c else None, e.unavailable_reason(), e.self_check('nn', 'cpu', 40))"
    )
    outputs = {}
    for capability in ("avx2", "default"):
        env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240, check=True
        )
        outputs[capability] = done.stdout.strip()
    assert outputs["avx2"] == f"{ISA_AVX2} None True"
    assert outputs["default"] == "None no native code path for CPU capability DEFAULT False"
