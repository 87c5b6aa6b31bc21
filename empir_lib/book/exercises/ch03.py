"""Exercise checks, chapter 3: DoReFa quantisation (paper Eq. 5)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from ...nets import quantize
from .verdict import as_float_array, test_seed, verdict


def quantizer_inputs(bits: int, n_random: int = 2000, seed: int | None = None) -> np.ndarray:
    """Test inputs in [0, 1] for a k-bit quantiser: a grid, random draws, both ends.

    The draws use ``seed``, by default seed 0 in a notebook and the grader's
    hidden seed while grading (:func:`.verdict.test_seed`).

    Inputs whose ``x * (2^k - 1)`` lies within 1e-4 of a half-integer are
    dropped: there, float32 against float64 arithmetic alone can flip the
    rounding, and a correct student answer would be rejected for it.
    """
    n = 2**bits - 1
    rng = np.random.default_rng(test_seed(0) if seed is None else seed)
    x = np.concatenate([np.linspace(0, 1, 4 * n + 3), rng.uniform(0, 1, n_random),
                        np.arange(n + 1) / n]).astype(np.float32)
    frac = (x.astype(np.float64) * n) % 1.0
    return x[np.abs(frac - 0.5) > 1e-4]


def check_quantizer(student_fn: Callable, bits: Iterable[int] = range(1, 9)) -> bool:
    """Compare a student's k-bit quantiser with Eq. 5 (left) for k = 1..8.

    ``student_fn(x, k)`` takes a float32 NumPy array in [0, 1] and an int and
    returns the quantised array, ``round((2^k - 1) x) / (2^k - 1)``.  The
    reference is :func:`empir_lib.nets.quantize.quantize_k`.
    """
    total = 0
    for k in bits:
        x = quantizer_inputs(k)
        expected = np.asarray(quantize.quantize_k(x, k), dtype=np.float64)
        try:
            got = np.asarray(student_fn(x.copy(), k), dtype=np.float64)
        except Exception as e:  # the student's code failing is an answer to report, not a crash
            return verdict(False, f"k={k}: your function raised {type(e).__name__}: {e}")
        if got.shape != x.shape:
            return verdict(False, f"k={k}: for an input of shape {x.shape} you returned shape "
                                   f"{got.shape}; return one value per input.")
        bad = np.flatnonzero(~np.isclose(got, expected, rtol=0, atol=1e-5))
        if bad.size:
            i = bad[0]
            return verdict(False, f"k={k}: wrong on {bad.size} of {x.size} inputs, e.g. x={x[i]:.4f}: "
                                   f"you return {got[i]:.4f}, Eq. 5 gives {expected[i]:.4f} "
                                   f"(one of the {2**k} levels j/{2**k - 1}).")
        total += x.size
    ks = list(bits)
    return verdict(True, f"correct: your quantiser matches Eq. 5 for k = {ks[0]}..{ks[-1]} "
                          f"on {total} inputs.")


def check_levels(answer: object, bits: int, kind: str = "weights") -> bool:
    """Check the set of values a ``bits``-bit quantiser can output (any order)."""
    expected = quantize.levels(bits, kind)
    got, why = as_float_array(answer, "your levels")
    if got is None:
        return verdict(False, why)
    got = np.unique(np.round(got, 6))
    if got.size != expected.size:
        return verdict(False, f"a {bits}-bit {kind} quantiser has {expected.size} distinct levels; "
                               f"you listed {got.size}.")
    if not np.allclose(np.sort(got), expected, atol=1e-3):
        return verdict(False, f"right number of levels ({expected.size}) but not the right values.")
    return verdict(True, f"correct: the {expected.size} levels of {bits}-bit {kind} are "
                          + ", ".join(f"{v:+.4g}" for v in expected) + ".")


STE_POINTS = (-0.25, 0.4, 0.9, 1.3)


def ste_gradients(x: Sequence[float] = STE_POINTS, bits: int = 2) -> np.ndarray:
    """d quantize_activations(a) / d a at the points ``x``, from a GradientTape."""
    a = tf.constant(np.asarray(x, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(a)
        y = quantize.quantize_activations(a, bits)
    return np.asarray(tape.gradient(y, a), dtype=np.float64)


def check_ste_gradients(answer: object, x: Sequence[float] = STE_POINTS, bits: int = 2) -> bool:
    """Check predicted gradients of the activation quantiser at the points ``x``.

    The truth is what TensorFlow returns through the straight-through
    estimator (paper Section 3; the original code, appendix section 2,
    book/appendix_original_code.ipynb), not the true derivative
    of a staircase (which is 0 almost everywhere).
    """
    expected = ste_gradients(x, bits)
    got, why = as_float_array(answer, "your gradients")
    if got is None:
        return verdict(False, why)
    if got.size != expected.size:
        return verdict(False, f"give one gradient per point: {len(x)} points {tuple(x)}, "
                               f"you gave {got.size} values.")
    wrong = [f"a={p}" for p, g, e in zip(x, got, expected) if not math.isclose(g, e, abs_tol=1e-6)]
    if wrong:
        hint = ""
        if np.all(got == 0):
            hint = " A staircase has zero slope almost everywhere, but the STE replaces that slope."
        return verdict(False, f"wrong at {', '.join(wrong)}.{hint}")
    return verdict(True, f"correct: the gradients at a = {tuple(x)} are "
                          f"{tuple(float(v) for v in expected)}.")
