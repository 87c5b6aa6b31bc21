"""Exercise checks, chapter 3: DoReFa quantisation (paper Eq. 5)."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from ...core import settings
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


def crossing_problem(bits: int = 2, step: float | None = None) -> dict:
    """Where a ``bits``-bit input quantiser can be crossed, found with the library's quantiser.

    ``edges``: the inputs in (0, 1) where ``quantize_activations`` changes its
    output, read off a fine float32 grid.  ``min_step``: the shortest distance
    from a level to an edge, i.e. the smallest signed step that can move a
    pixel sitting on a level to another code at all.  ``steps``: how many
    steps of ``step`` (the paper's MNIST PGD step, Table 1) a black pixel (0)
    takes, always in the same direction, before its code changes; every step
    before that one is invisible to the member.
    """
    step = settings.ATTACK_PRESETS["mnist"]["pgd"]["eps_iter"] if step is None else step
    x = np.linspace(0, 1, 600_001, dtype=np.float32)
    q = quantize.quantize_activations(x, bits).numpy()
    change = np.flatnonzero(np.diff(q) != 0)
    edges = (x[change].astype(np.float64) + x[change + 1]) / 2
    lv = quantize.levels(bits, "activations")
    min_step = float(np.min(np.abs(edges[None, :] - lv[:, None])))
    pixel, n = np.float32(0), 0
    start = quantize.quantize_activations(np.float32([0]), bits).numpy()[0]
    while quantize.quantize_activations(np.float32([pixel]), bits).numpy()[0] == start:
        pixel, n = np.float32(pixel + np.float32(step)), n + 1
    return {"edges": edges, "min_step": min_step, "steps": n, "step": step, "bits": bits}


def check_crossing(answer: object, bits: int = 2, step: float | None = None) -> bool:
    """Check ``{"edges": [...], "min_step": ..., "steps": ...}`` for a ``bits``-bit input quantiser.

    The truth is :func:`crossing_problem` (Eq. 5's activation quantiser, as
    ``empir_lib.nets.quantize`` computes it, ties rounded to even).
    """
    truth = crossing_problem(bits, step)
    if not isinstance(answer, dict) or not {"edges", "min_step", "steps"} <= set(answer):
        return verdict(False, 'give a dict {"edges": [...], "min_step": ..., "steps": ...}; '
                              f"got {answer!r}.")
    edges, why = as_float_array(answer["edges"], "your edges")
    if edges is None:
        return verdict(False, why)
    levels = quantize.levels(bits, "activations")
    if edges.size == levels.size and np.allclose(np.sort(edges), levels, atol=1e-3):
        return verdict(False, "those are the levels, where the output sits; the code changes halfway "
                              "between two levels.")
    if edges.size != truth["edges"].size:
        return verdict(False, f"a {bits}-bit quantiser has {truth['edges'].size} edges in (0, 1), one "
                              f"between each pair of neighbouring levels; you gave {edges.size} values.")
    if not np.allclose(np.sort(edges), truth["edges"], atol=1e-3):
        return verdict(False, "right number of edges, but the code does not change there: where does "
                              "round((2^k - 1) a) jump from one level to the next?")
    try:
        min_step, steps = float(answer["min_step"]), answer["steps"]
    except (TypeError, ValueError):
        return verdict(False, f"min_step should be a number; got {answer['min_step']!r}.")
    if math.isclose(min_step, 2 * truth["min_step"], abs_tol=1e-3):
        return verdict(False, "min_step: a step of a whole level always crosses, but a smaller one can: "
                              "how far is a level from the nearest edge?")
    if not math.isclose(min_step, truth["min_step"], abs_tol=1e-3):
        return verdict(False, f"min_step: you gave {min_step:.4g}; measure from a level to the nearest edge.")
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool):
        return verdict(False, f"steps should be a whole number of steps; got {steps!r}.")
    if steps == truth["steps"] - 1:
        return verdict(False, f"steps: after {steps} steps the pixel sits just below the edge at "
                              f"{truth['edges'][0]:.4f} and still rounds to 0; one more is needed.")
    if steps != truth["steps"]:
        return verdict(False, f"steps: you gave {steps}; count the steps of {truth['step']} from 0 until the "
                              "pixel first rounds to the next level.")
    return verdict(True, "correct: the edges are " + ", ".join(f"{e:.4f}" for e in truth["edges"])
                   + f"; no step under {truth['min_step']:.4f} moves a pixel off a level, and the first "
                   f"{truth['steps'] - 1} PGD steps of {truth['step']} on a black pixel change nothing "
                   "the member sees: the attacker's progress is invisible until step "
                   f"{truth['steps']}.")
