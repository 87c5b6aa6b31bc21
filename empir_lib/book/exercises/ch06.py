"""Exercise checks, chapter 6: hardware overheads (paper Eq. 6)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from ...core import paper
from ...core.errors import FULL_PRECISION, VALID_BITS
from ...hardware import deploy_bench, overhead
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


BUDGET = 0.25  # the paper's "<25% compute and memory overhead" (section 5.1)


def precision_budget(m: int = 1, n: int = 2, bound: float = BUDGET) -> dict[str, int | None]:
    """Per throughput model, the widest k that keeps EMPIR(m, n)'s Eq. 6 time overhead under ``bound``.

    Every LP member has k bits for weights and activations alike; the
    overhead is Eq. 6's time beyond the m FP members, and "under" is strict,
    as the paper's "<25%" is.  None where no k fits.
    """
    out: dict[str, int | None] = {}
    for model in overhead.THROUGHPUTS:
        fits = [k for k in VALID_BITS if k < FULL_PRECISION and overhead.eq6_time(m, [k] * n, model) - m < bound]
        out[model] = max(fits) if fits else None
    return out


def check_precision_budget(answer: object, m: int = 1, n: int = 2, bound: float = BUDGET) -> bool:
    """Check ``{"proportional": k, "native": k}``: the widest precision within the time budget (Eq. 6)."""
    truth = precision_budget(m, n, bound)
    if not isinstance(answer, dict) or set(answer) != set(truth):
        return verdict(False, f"give a dict with the keys {sorted(truth)}; got {answer!r}.")
    hints = []
    for model, want in truth.items():
        got = answer[model]
        if got == want and (got is None) == (want is None):
            continue
        if got is not None and (isinstance(got, bool) or not isinstance(got, (int, np.integer))):
            hints.append(f"{model}: give a whole number of bits, or None; got {got!r}")
        elif model == "native" and want is None:
            hints.append("native: a k-bit operation runs at the next built-in width; what does a 1-bit "
                         f"member cost, then, beside a {min(paper.NATIVE_WIDTHS)}-bit one?")
        elif got in VALID_BITS and overhead.eq6_time(m, [int(got)] * n, model) - m == bound:
            hints.append(f"{model}: {got} bits cost exactly {bound:.0%}, and the paper's bound is strict (<)")
        else:
            hints.append(f"{model}: not quite (you gave {got!r})")
    if hints:
        return verdict(False, "; ".join(hints).rstrip("?") + ("?" if hints[-1].endswith("?") else "."))
    widths = ", ".join(map(str, paper.NATIVE_WIDTHS))
    return verdict(True, f"correct: with every width native, EMPIR({m}, {n}) stays under {bound:.0%} up to "
                         f"{truth['proportional']} bits. With only {widths} bits built in, "
                         + ("no precision fits" if truth["native"] is None else f"{truth['native']} bits fit")
                         + ": a narrower member runs at the next built-in width's rate.")


def rate_budget(rate: float, n: int = 2, bound: float = BUDGET) -> dict[str, float | int]:
    """What fits in the time budget when every LP member runs on int8 kernels at ``rate`` of float's time.

    ``members``: the most LP members one FP member can take with Eq. 6's time
    overhead still under ``bound``; ``max_rate``: the largest rate at which
    ``n`` members fit (the overhead is linear in the rate).  Eq. 6 is priced
    with :func:`empir_lib.hardware.deploy_bench.ops_per_sec`.
    """
    members = 0
    while overhead.eq6_time(1, [8] * (members + 1), deploy_bench.ops_per_sec(rate)) - 1 < bound:
        members += 1
    per_unit_rate = overhead.eq6_time(1, [8] * n, deploy_bench.ops_per_sec(1.0)) - 1
    return {"members": members, "max_rate": bound / per_unit_rate}


def check_rate_budget(answer: object, rate: float, n: int = 2, bound: float = BUDGET) -> bool:
    """Check ``{"members": ..., "max_rate": ...}`` for int8 kernels measured at ``rate`` of float's time."""
    truth = rate_budget(rate, n, bound)
    if not isinstance(answer, dict) or set(answer) != {"members", "max_rate"}:
        return verdict(False, f'give a dict {{"members": ..., "max_rate": ...}}; got {answer!r}.')
    members, max_rate = answer["members"], answer["max_rate"]
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)):
        return verdict(False, f"members: give a whole number of members; got {members!r}.")
    try:
        max_rate = float(max_rate)
    except (TypeError, ValueError):
        return verdict(False, f"max_rate: give a number; got {max_rate!r}.")
    if members != truth["members"]:
        return verdict(False, f"members: {members} int8 members cost {members} x {rate:.3f} = "
                              f"{members * rate:.3f} beyond the FP member; the budget is {bound}.")
    if math.isclose(max_rate, bound, abs_tol=1e-3):
        return verdict(False, f"max_rate: that rate fits one member; the paper's ensembles have {n}.")
    if not math.isclose(max_rate, truth["max_rate"], abs_tol=1e-3):
        return verdict(False, f"max_rate: not quite (you gave {max_rate:.4g}).")
    return verdict(True, f"correct: at the measured rate {rate:.3f}, {truth['members']} int8 member(s) fit "
                         f"under {bound:.0%}; the paper's {n} would need int8 kernels at most "
                         f"{truth['max_rate']:.3f} of float's time, {1 / truth['max_rate']:.0f} times faster.")
