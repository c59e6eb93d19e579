"""A job's logged costs as one stored value: the bytes of ``cost_curves.curve`` (revision 0007).

Until revision 0007 every logged cost was a row of its own: 1.01 M rows for a 10,000-job sweep, which
took the store longer to write than the native engine took to train them (issue 11 §2). A curve is now
one value per job. The layout is plain and fixed so any reader can decode it without xorjobs:

    byte 0          format version (1)
    then n int32    the logged steps, ascending
    then n float64  their costs, in the same order

all little-endian. A float64 holds every cost exactly (they are float32 values widened) and keeps NaN
and ±inf as they are, so no "kind" column is needed beside it (``floats`` explains why rows had one).
"""

from __future__ import annotations

import operator
import struct
import sys
from array import array
from collections.abc import Sequence
from itertools import islice

FORMAT_VERSION = 1
_HEADER = struct.Struct("<B")
_POINT_BYTES = 4 + 8

if array("i").itemsize != 4 or array("d").itemsize != 8:  # C's int and double, as on every platform we know
    raise ImportError("xorjobs needs 4-byte C ints and 8-byte doubles to read stored cost curves")

Point = tuple[int, float]
"""One logged cost: ``(step, cost)``."""


def encode_curve(points: Sequence[Point]) -> bytes:
    """The stored value of ``points``, which must be in ascending step order (``merge_points`` gives it)."""
    if not points:
        return _HEADER.pack(FORMAT_VERSION)
    steps, costs = zip(*points, strict=True)
    return _HEADER.pack(FORMAT_VERSION) + struct.pack(f"<{len(steps)}i{len(costs)}d", *steps, *costs)


def decode_curve(blob: bytes) -> list[Point]:
    """The ``(step, cost)`` points of a stored value, in step order."""
    count = point_count(blob)
    # array reads machine order: twice as fast as struct here, and the curves of a sweep are many.
    steps, costs = array("i"), array("d")
    steps.frombytes(blob[_HEADER.size : _HEADER.size + 4 * count])
    costs.frombytes(blob[_HEADER.size + 4 * count :])
    if sys.byteorder == "big":
        steps.byteswap()
        costs.byteswap()
    return list(zip(steps, costs, strict=True))


def point_count(blob: bytes) -> int:
    """How many points a stored value holds; raises ValueError for bytes that are not a curve."""
    if not blob or blob[0] != FORMAT_VERSION or (len(blob) - _HEADER.size) % _POINT_BYTES:
        version = blob[0] if blob else None
        raise ValueError(f"not a stored cost curve (format {version}, {len(blob)} bytes)")
    return (len(blob) - _HEADER.size) // _POINT_BYTES


def merge_points(old: Sequence[Point], new: Sequence[Point]) -> list[Point]:
    """``old`` with ``new`` written over it, per step, in step order: a chunk sent again (its first
    write committed but the worker never heard so) changes nothing, as the per-step rows' primary key
    made sure before."""
    if _ascending(new) and (not old or not new or new[0][0] > old[-1][0]):
        return [*old, *new]  # the usual case: the first or a later chunk of the same run
    merged = dict(old)
    merged.update(new)
    return sorted(merged.items())


def _ascending(points: Sequence[Point]) -> bool:
    steps = [step for step, _ in points]
    return all(map(operator.lt, steps, islice(steps, 1, None)))  # C loops: a pack checks thousands
