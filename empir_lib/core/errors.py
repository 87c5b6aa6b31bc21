"""One exception type and the small validators every module shares.

A user who passes a bad value should read one sentence that names the value,
the valid choices and the fix; never a TensorFlow stack trace.  Every check
that more than one module needs lives here, so the wording stays consistent.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import TypeVar

FULL_PRECISION = 32
VALID_BITS = tuple(range(1, 17)) + (FULL_PRECISION,)
T = TypeVar("T")


class EmpirError(ValueError):
    """A bad input or missing resource, explained for the user."""


def check_bits(bits: object, what: str = "bits") -> int:
    """Return ``bits`` as an int if it is a valid precision (1..16, or 32 = FP)."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        if isinstance(bits, str) and bits.strip().isdigit():
            bits = int(bits)
        else:
            raise EmpirError(
                f"{what}={bits!r} is not an integer; use 1..16 for low precision or 32 for full precision."
            )
    bits = int(bits)
    if bits not in VALID_BITS:
        raise EmpirError(
            f"{what}={bits} is out of range; use 1..16 for low precision or 32 for full precision."
        )
    return bits


def check_choice(value: T, choices: Collection, what: str) -> T:
    """Return ``value`` if it is one of ``choices``, else name them all."""
    if value not in choices:
        raise EmpirError(f"unknown {what} {value!r}; choose one of: {', '.join(map(str, choices))}.")
    return value


def check_positive_int(value: object, what: str, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise EmpirError(f"{what}={value!r} must be an integer >= {minimum}.")
    return int(value)


def check_finite_number(value: object, what: str, lo: float | None = None, hi: float | None = None) -> float:
    """Return ``value`` as a float if it is finite (and within [lo, hi] when given)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise EmpirError(f"{what}={value!r} must be a finite number.")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise EmpirError(f"{what}={value!r} must lie in [{lo}, {hi}].")
    return float(value)
