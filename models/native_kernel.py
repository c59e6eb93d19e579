"""The native kernel (``models/native/xor_kernel.c``), loaded with ctypes, and what this machine picks.

The shared library is built when the project is installed (a setuptools extension,
``xorjobs.models._xor_kernel``, that exports plain C functions rather than a Python module) and is
never compiled at run time. It needs no torch headers: it gets raw float buffers, and the SLEEF ``expf``
entry point ATen's vector sigmoid calls as a function pointer taken from torch's own loaded
``libtorch_cpu``; glibc's ``expf``/``logf``/``log1pf`` it links itself (the same functions torch's
scalar kernels call, resolved once per process).

``machine_choices`` reads what this machine does from torch at run time: the CPU capability ATen
dispatches to decides the instruction set, the sigmoid's vector/scalar split, the SLEEF entry point
and whether SGD's update is fused. Anything it does not know gives ``None``: the caller then uses the
exact packed engine.
"""

from __future__ import annotations

import ctypes
import importlib.util
from dataclasses import dataclass
from decimal import Decimal, getcontext
from functools import cache
from pathlib import Path

import numpy as np
import torch

LIBRARY_MODULE = "xorjobs.models._xor_kernel"
ABI_VERSION = 4  # xor_kernel.c's ABI_VERSION: the op codes and structures this module writes
ISA_AVX512, ISA_AVX2 = 1, 2


@dataclass(frozen=True)
class KernelChoices:
    """How the tape computes a solo run's step on this machine: each field is one primitive's path.

    The start-up self-check (``models.native_probes``) compares each with the solo kernel it stands
    for; tests replace one with a wrong one and see the check refuse it.
    """

    isa: int  # ISA_AVX512 or ISA_AVX2: the kernel's code path (and its vector width)
    vector_chunk: int  # elements per iteration of ATen's vectorized_loop (2 Vectorized<float>)
    sleef_symbol: str  # the SLEEF exp that Vectorized<float>::exp calls at this capability
    fused_sgd: bool  # param.add_(grad, alpha=-lr) as one FMA (AVX2/AVX-512 builds) or mul then add
    scalar_sigmoid: str = "clone"  # "clone" (vectorised copy of glibc expf) or "libm" (glibc per lane)
    sum_order: str = "sequential"  # the 4-term sums: "sequential" ((s0+s1)+s2)+s3, or "pairwise"


def machine_choices() -> KernelChoices | None:
    """What ATen does here, from the capability it reports (``None``: no native path for it)."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512"):
        return KernelChoices(ISA_AVX512, 32, "Sleef_expf16_u10", fused_sgd=True)
    if capability == "AVX2":
        return KernelChoices(ISA_AVX2, 16, "Sleef_expf8_u10", fused_sgd=True)
    return None  # DEFAULT (unfused SGD, scalar "vector" exp), ZVECTOR, other architectures


def _exp_table() -> np.ndarray:
    """glibc's ``__exp2f_data.tab``: ``bits(2^(i/32)) - (i << 47)``, each power correctly rounded."""
    getcontext().prec = 60
    table = np.empty(32, dtype=np.uint64)
    for i in range(32):
        power = float(Decimal(2) ** (Decimal(i) / 32))  # float(Decimal) rounds correctly
        bits = int(np.array(power, dtype=np.float64).view(np.uint64))
        table[i] = (bits - (i << 47)) % 2**64
    return table


class Pack(ctypes.Structure):
    """``xk_pack`` of xor_kernel.c, field for field."""

    _fields_ = [
        ("ops", ctypes.c_void_p),
        ("n_forward", ctypes.c_int32),
        ("n_cost", ctypes.c_int32),
        ("n_backward", ctypes.c_int32),
        ("init", ctypes.c_void_p),
        ("nslots", ctypes.c_int32),
        ("theta", ctypes.c_void_p),
        ("rows", ctypes.c_int32),
        ("param_slot", ctypes.c_int32),
        ("alpha", ctypes.c_void_p),
        ("alpha_slot", ctypes.c_int32),
        ("jobs", ctypes.c_int32),
        ("hyp_slots", ctypes.c_void_p),
        ("n_hyp", ctypes.c_int32),
        ("cost_slot", ctypes.c_int32),
        ("log_every", ctypes.c_int32),
        ("last_step", ctypes.c_int32),
        ("sleef", ctypes.c_void_p),
        ("block", ctypes.c_int32),
    ]


def _pointer(array: np.ndarray) -> int:
    assert array.flags.c_contiguous
    return int(array.ctypes.data)


class Kernel:
    """The loaded library: ``eval`` (the probes' entry) and ``train`` (a pack's steps)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lib = ctypes.CDLL(str(path))
        if self._lib.xk_abi_version() != ABI_VERSION:
            raise OSError(f"{path} was built from other kernel sources (reinstall the project)")
        self._lib.xk_eval.restype = ctypes.c_int
        self._lib.xk_eval.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self._lib.xk_eval.argtypes += [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        self._lib.xk_train.restype = ctypes.c_int
        self._lib.xk_train.argtypes = [ctypes.c_int, ctypes.POINTER(Pack), ctypes.c_int, ctypes.c_int]
        self._lib.xk_train.argtypes += [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._lib.xk_isa_supported.argtypes = [ctypes.c_int]
        self._table = _exp_table()
        self._lib.xk_set_exp_table(ctypes.c_void_p(_pointer(self._table)))
        self.block = int(self._lib.xk_block())  # the probes' block, and a full pack's
        self.small_block = int(self._lib.xk_small_block())  # for a few lanes (a small or stopping pack)

    def supports(self, isa: int) -> bool:
        return bool(self._lib.xk_isa_supported(isa))

    def eval(self, choices: KernelChoices, ops: np.ndarray, slots: np.ndarray) -> None:
        """Run ``ops`` once over each (nslots, block) image of ``slots`` (blocks, nslots, block)."""
        blocks, nslots, block = slots.shape
        assert block == self.block and slots.dtype == np.float32 and ops.dtype == np.int32
        status = self._lib.xk_eval(
            choices.isa, _pointer(ops), len(ops), _pointer(slots), nslots, blocks, sleef_entry(choices)
        )
        if status:
            raise RuntimeError("the native kernel refused to run (instruction set not supported)")

    def train(
        self,
        choices: KernelChoices,
        pack: Pack,
        step0: int,
        step1: int,
        costs: np.ndarray,
        fail_step: np.ndarray,
        hyp_out: np.ndarray | None,
    ) -> None:
        status = self._lib.xk_train(
            choices.isa,
            ctypes.byref(pack),
            step0,
            step1,
            _pointer(costs),
            _pointer(fail_step),
            None if hyp_out is None else _pointer(hyp_out),
        )
        if status:
            raise RuntimeError("the native kernel refused to run (instruction set not supported)")


def library_path() -> Path | None:
    """Where the installed build of the kernel is (``None``: not built here)."""
    try:
        spec = importlib.util.find_spec(LIBRARY_MODULE)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin else None


@cache
def load_kernel(path: Path | None) -> Kernel | None:
    """The kernel at ``path``, loaded once (``None`` when there is none or it does not load)."""
    if path is None or not path.is_file():
        return None
    try:
        return Kernel(path)
    except (OSError, AttributeError):
        return None


@cache
def sleef_entry(choices: KernelChoices) -> int:
    """The address of ``choices.sleef_symbol`` in torch's loaded ``libtorch_cpu`` (what ATen calls)."""
    library = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
    address = ctypes.cast(getattr(library, choices.sleef_symbol), ctypes.c_void_p).value
    assert address is not None
    return address


def sleef_available(choices: KernelChoices) -> bool:
    try:
        sleef_entry(choices)
    except (OSError, AttributeError):
        return False
    return True
