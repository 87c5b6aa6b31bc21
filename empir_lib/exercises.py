"""Checks for the book's exercises: each tells a student whether an answer is right.

Every check computes the true answer with the library itself (``quantize``,
``zoo``), compares, prints one verdict line starting with a tick or a cross,
and returns ``True`` or ``False``.  A wrong answer never raises: in a
classroom the notebook must keep running so the student can try again; the
verdict says what was expected where that teaches something (a wrong shape, a
fraction instead of percentage points) and gives a counter-example for a
wrong function.

Chapters call them as ``ok = check_quantizer(my_fn)``: the assignment keeps
the returned bool out of the cell's output (a trailing semicolon would too in
JupyterLab, but not under nbval, which runs cells without history and so
ignores it), and the printed verdict stays.
"""
from __future__ import annotations

import math

import numpy as np

from . import quantize, zoo

OK, NO = "\u2713", "\u2717"  # tick, cross


def _verdict(ok: bool, message: str) -> bool:
    print(f"{OK if ok else NO} {message}")
    return ok


def _as_float_array(answer, what: str):
    """The answer as a 1-D float array, or a message saying why it is not one."""
    try:
        arr = np.asarray(answer, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None, f"{what} should be a list of numbers; got {answer!r}."
    if not np.all(np.isfinite(arr)):
        return None, f"{what} contains NaN or Inf: {answer!r}."
    return arr, ""


# --- chapter 3: DoReFa quantisation (paper Eq. 5) -------------------------------------


def quantizer_inputs(bits: int, n_random: int = 2000, seed: int = 0) -> np.ndarray:
    """Test inputs in [0, 1] for a k-bit quantiser: a grid, random draws, both ends.

    Inputs whose ``x * (2^k - 1)`` lies within 1e-4 of a half-integer are
    dropped: there, float32 against float64 arithmetic alone can flip the
    rounding, and a correct student answer would be rejected for it.
    """
    n = 2**bits - 1
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.linspace(0, 1, 4 * n + 3), rng.uniform(0, 1, n_random),
                        np.arange(n + 1) / n]).astype(np.float32)
    frac = (x.astype(np.float64) * n) % 1.0
    return x[np.abs(frac - 0.5) > 1e-4]


def check_quantizer(student_fn, bits=range(1, 9)) -> bool:
    """Compare a student's k-bit quantiser with Eq. 5 (left) for k = 1..8.

    ``student_fn(x, k)`` takes a float32 NumPy array in [0, 1] and an int and
    returns the quantised array, ``round((2^k - 1) x) / (2^k - 1)``.  The
    reference is :func:`empir_lib.quantize.quantize_k`.
    """
    total = 0
    for k in bits:
        x = quantizer_inputs(k)
        expected = np.asarray(quantize.quantize_k(x, k), dtype=np.float64)
        try:
            got = np.asarray(student_fn(x.copy(), k), dtype=np.float64)
        except Exception as e:  # the student's code failing is an answer to report, not a crash
            return _verdict(False, f"k={k}: your function raised {type(e).__name__}: {e}")
        if got.shape != x.shape:
            return _verdict(False, f"k={k}: for an input of shape {x.shape} you returned shape "
                                   f"{got.shape}; return one value per input.")
        bad = np.flatnonzero(~np.isclose(got, expected, rtol=0, atol=1e-5))
        if bad.size:
            i = bad[0]
            return _verdict(False, f"k={k}: wrong on {bad.size} of {x.size} inputs, e.g. x={x[i]:.4f}: "
                                   f"you return {got[i]:.4f}, Eq. 5 gives {expected[i]:.4f} "
                                   f"(one of the {2**k} levels j/{2**k - 1}).")
        total += x.size
    ks = list(bits)
    return _verdict(True, f"correct: your quantiser matches Eq. 5 for k = {ks[0]}..{ks[-1]} "
                          f"on {total} inputs.")


def check_levels(answer, bits: int, kind: str = "weights") -> bool:
    """Check the set of values a ``bits``-bit quantiser can output (any order)."""
    expected = quantize.levels(bits, kind)
    got, why = _as_float_array(answer, "your levels")
    if got is None:
        return _verdict(False, why)
    got = np.unique(np.round(got, 6))
    if got.size != expected.size:
        return _verdict(False, f"a {bits}-bit {kind} quantiser has {expected.size} distinct levels; "
                               f"you listed {got.size}.")
    if not np.allclose(np.sort(got), expected, atol=1e-3):
        return _verdict(False, f"right number of levels ({expected.size}) but not the right values.")
    return _verdict(True, f"correct: the {expected.size} levels of {bits}-bit {kind} are "
                          + ", ".join(f"{v:+.4g}" for v in expected) + ".")


STE_POINTS = (-0.25, 0.4, 0.9, 1.3)


def ste_gradients(x=STE_POINTS, bits: int = 2) -> np.ndarray:
    """d quantize_activations(a) / d a at the points ``x``, from a GradientTape."""
    import tensorflow as tf

    a = tf.constant(np.asarray(x, dtype=np.float32))
    with tf.GradientTape() as tape:
        tape.watch(a)
        y = quantize.quantize_activations(a, bits)
    return np.asarray(tape.gradient(y, a), dtype=np.float64)


def check_ste_gradients(answer, x=STE_POINTS, bits: int = 2) -> bool:
    """Check predicted gradients of the activation quantiser at the points ``x``.

    The truth is what TensorFlow returns through the straight-through
    estimator (paper Section 3; fact sheet section 2), not the true derivative
    of a staircase (which is 0 almost everywhere).
    """
    expected = ste_gradients(x, bits)
    got, why = _as_float_array(answer, "your gradients")
    if got is None:
        return _verdict(False, why)
    if got.size != expected.size:
        return _verdict(False, f"give one gradient per point: {len(x)} points {tuple(x)}, "
                               f"you gave {got.size} values.")
    wrong = [f"a={p}" for p, g, e in zip(x, got, expected) if not math.isclose(g, e, abs_tol=1e-6)]
    if wrong:
        hint = ""
        if np.all(got == 0):
            hint = " A staircase has zero slope almost everywhere, but the STE replaces that slope."
        return _verdict(False, f"wrong at {', '.join(wrong)}.{hint}")
    return _verdict(True, f"correct: the gradients at a = {tuple(x)} are "
                          f"{tuple(float(v) for v in expected)}.")


# --- chapter 1: the zoo --------------------------------------------------------------


def best_lowprecision_member(dataset: str = "mnist", zoo_dir=None) -> tuple[str, float]:
    """(zoo id, clean full-test accuracy) of the most accurate low-precision member."""
    lp = {k: v for k, v in zoo.members(dataset, zoo_dir).items() if (v["wbits"], v["abits"]) != (32, 32)}
    best = max(lp, key=lambda k: lp[k]["test_accuracy"])
    return best, lp[best]["test_accuracy"]


def check_best_member(answer: str, dataset: str = "mnist", zoo_dir=None) -> bool:
    """Check the zoo id of the most accurate low-precision member (ties all count)."""
    entries = zoo.members(dataset, zoo_dir)
    _, acc = best_lowprecision_member(dataset, zoo_dir)
    if answer not in entries:
        return _verdict(False, f"{answer!r} is not a {dataset} zoo member; ids look like "
                               f"'{dataset}-a4w2-s1'.")
    e = entries[answer]
    if (e["wbits"], e["abits"]) == (32, 32):
        return _verdict(False, f"{answer} is full precision; the question asks for a low-precision member.")
    if e["test_accuracy"] < acc:
        return _verdict(False, f"{answer} reaches {e['test_accuracy']:.2%}; another low-precision "
                               f"member does better.")
    return _verdict(True, f"correct: {answer} reaches {acc:.2%} clean accuracy on the full test set.")


def accuracy_gap(dataset: str, wbits: int, abits: int, seed: int = 1, zoo_dir=None) -> float:
    """FP member's clean accuracy minus a LP member's, in percentage points (seed-1 members)."""
    m = zoo.members(dataset, zoo_dir)
    fp, lp = zoo.find(dataset, 32, 32, 1), zoo.find(dataset, wbits, abits, seed)
    return 100.0 * (m[fp]["test_accuracy"] - m[lp]["test_accuracy"])


def check_accuracy_gap(answer, dataset: str = "mnist", wbits: int = 1, abits: int = 1,
                       zoo_dir=None) -> bool:
    """Check the accuracy a LP member loses against the FP member, in percentage points."""
    expected = accuracy_gap(dataset, wbits, abits, zoo_dir=zoo_dir)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return _verdict(False, f"give one number (percentage points); got {answer!r}.")
    if math.isclose(got, expected, abs_tol=0.01):
        return _verdict(True, f"correct: the a{abits}w{wbits} member is {expected:.2f} points below the "
                              f"FP member.")
    if math.isclose(100 * got, expected, abs_tol=0.01):
        return _verdict(False, "that looks like a fraction; multiply by 100 for percentage points.")
    if math.isclose(-got, expected, abs_tol=0.01):
        return _verdict(False, "right size, wrong sign: give FP accuracy minus low-precision accuracy.")
    return _verdict(False, f"not quite: you gave {got:.2f} points.")
