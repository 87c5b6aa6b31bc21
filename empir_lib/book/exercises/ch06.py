"""Exercise checks, chapter 6: hardware overheads (paper Eq. 6)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ...hardware import overhead
from .verdict import verdict


def check_overheads(answer: dict, precisions: Sequence[tuple[int, int]], ops_per_sec: str = "proportional") -> bool:
    """Check Eq. 6's time and storage for an ensemble given as (wbits, abits) per member."""
    expected = overhead.ensemble_overheads(precisions, ops_per_sec)
    if not isinstance(answer, dict) or set(answer) != {"time", "storage"}:
        return verdict(False, f"give a dict {{'time': ..., 'storage': ...}}; got {answer!r}.")
    try:
        got = {k: float(v) for k, v in answer.items()}
    except (TypeError, ValueError):
        return verdict(False, f"both values should be numbers; got {answer!r}.")
    m, lp = overhead.split_members(precisions)
    hints = []
    for key in ("time", "storage"):
        if math.isclose(got[key], expected[key], abs_tol=1e-3):
            continue
        if m and math.isclose(got[key], expected[key] - m, abs_tol=1e-3):
            hints.append(f"{key}: that is only the LP members' part; Eq. 6 adds M = {m} for the FP members")
        elif key == "time" and math.isclose(got[key], overhead.eq6_time(m, [w for w, _ in lp], ops_per_sec),
                                            abs_tol=1e-3):
            hints.append("time: you used the weight bits; an operation needs the wider of wbits and abits")
        elif key == "storage" and math.isclose(
                got[key], overhead.eq6_storage(m, [max(w, a) for w, a in lp]), abs_tol=1e-3):
            hints.append("storage: only weights are stored, so count wbits, not the activations")
        else:
            hints.append(f"{key}: not quite (you gave {got[key]:.4g})")
    if hints:
        return verdict(False, "; ".join(hints) + ".")
    return verdict(True, f"correct: time {expected['time']:.4g}x and storage {expected['storage']:.4g}x "
                          "one FP model.")


def check_pack(student_fn: Callable, bits: Sequence[int] = (1, 2, 3, 4), count: int = 1001) -> bool:
    """Check ``student_fn(codes, k)`` -> uint8 array packing k-bit codes as :func:`overhead.pack_codes`.

    The layout is the library's: code i occupies bits i*k .. i*k+k-1 of the
    stream, least significant bit first, and bytes fill from their lowest bit
    (``np.packbits(..., bitorder='little')``).  The check unpacks your bytes
    with :func:`overhead.unpack_codes` and compares the codes.
    """
    rng = np.random.default_rng(1)
    for k in bits:
        codes = rng.integers(0, 2**k, count)
        try:
            got = np.asarray(student_fn(codes.copy(), k))
        except Exception as e:
            return verdict(False, f"k={k}: your function raised {type(e).__name__}: {e}")
        want_bytes = math.ceil(count * k / 8)
        if got.dtype != np.uint8:
            return verdict(False, f"k={k}: return bytes as a uint8 array; you returned {got.dtype}.")
        if got.size != want_bytes:
            hint = " Each code should take k bits, not a whole byte." if got.size == count else ""
            return verdict(False, f"k={k}: {count} {k}-bit codes fill {want_bytes} bytes; you returned "
                                   f"{got.size}.{hint}")
        back = overhead.unpack_codes(got.reshape(-1), k, count)
        if not np.array_equal(back, codes):
            return verdict(False, f"k={k}: right size, but {np.mean(back != codes):.0%} of the codes unpack "
                                   "wrongly; put each code's least significant bit first and use "
                                   "np.packbits(..., bitorder='little').")
    return verdict(True, f"correct: {count} codes of k = {', '.join(map(str, bits))} bits pack into "
                          f"ceil({count} k / 8) bytes and unpack exactly.")
