"""Exercise checks, chapter 8: adaptive attacks."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ...attack import attacks
from ...nets import ensemble
from .verdict import verdict


def _stub_ensemble(k: int) -> ensemble.Ensemble:
    """An ensemble whose k "members" read their logits off a stacked (k, batch, classes) input.

    It lets a check run the library's own objectives (``attacks.score_function``)
    on given member logits, without any network.
    """
    members = tuple((lambda x, training=False, i=i: x[i]) for i in range(k))
    return ensemble.Ensemble(members, tuple(f"m{i}" for i in range(k)), (False,) * (k - 1) + (True,), "vote")


def mean_prob_problem(k: int = 3, batch: int = 64, classes: int = 10, seed: int = 0) -> np.ndarray:
    """Member logits (k, batch, classes) with confident members, as trained networks are."""
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, (k, batch, classes)) * rng.uniform(1, 40, (k, batch, 1))).astype(np.float32)


def objective_scores(logits: ArrayLike, objective: str) -> np.ndarray:
    """The library's scores (``attacks.score_function``) for member logits (k, batch, classes)."""
    z = tf.constant(np.asarray(logits, np.float32))
    return np.asarray(attacks.score_function(_stub_ensemble(int(z.shape[0])), objective)(z), np.float64)


def _softmax(s: ArrayLike) -> np.ndarray:
    s = np.asarray(s, np.float64)
    m = np.max(s, -1, keepdims=True)
    e = np.exp(s - m)
    return e / e.sum(-1, keepdims=True)


def check_mean_prob_scores(student_fn: Callable) -> bool:
    """Check ``student_fn(z)`` -> scores whose softmax is the members' mean probability.

    ``z`` is a float32 NumPy array (members, batch, classes) of member
    logits.  Cross-entropy on the scores is then the negative log-likelihood
    of the mixture, the adaptive ``mean_prob`` objective; scores may differ
    from the library's by a constant per image (softmax ignores it).
    """
    z = mean_prob_problem()
    target = _softmax(objective_scores(z, "mean_prob"))
    try:
        got = np.asarray(student_fn(z.copy()), dtype=np.float64)
    except Exception as e:  # the student's code failing is an answer to report, not a crash
        return verdict(False, f"your function raised {type(e).__name__}: {e}")
    if got.shape != target.shape:
        return verdict(False, f"for logits of shape {z.shape} return one score per image and class, shape "
                               f"{target.shape}; you returned {got.shape}.")
    if np.isnan(got).any() or np.isposinf(got).any():
        return verdict(False, "your scores contain NaN or +inf; work with log_softmax and logsumexp.")
    if np.isneginf(got).all(-1).any():
        return verdict(False, "for some images every score is -inf (log of underflowed probabilities): "
                               "average in log space with logsumexp over log_softmax(z).")
    probs = _softmax(got)
    if np.allclose(probs, target, atol=1e-5):
        return verdict(True, "correct: softmax of your scores is the members' mean probability, so "
                              "cross-entropy on them is the mixture's negative log-likelihood.")
    if np.allclose(probs, _softmax(objective_scores(z, "original_attack_prob_as_logits")), atol=1e-5) or \
            np.allclose(probs, _softmax(_softmax(z).mean(0)), atol=1e-5):
        return verdict(False, "you return the probabilities themselves; fed to softmax cross-entropy they "
                               "act as logits (the original code's mistake). Return their log.")
    if np.allclose(probs, _softmax(objective_scores(z, "mean_logits")), atol=1e-5):
        return verdict(False, "that is the mean of the logits (a geometric mean of the probabilities), "
                               "another adaptive objective; this one averages the probabilities.")
    return verdict(False, f"softmax of your scores differs from the mean probability by up to "
                           f"{np.abs(probs - target).max():.3g}.")


def worst_case_problem(seed: int = 0) -> dict:
    """Per-image "still correct" flags of four attacks on 200 images, deliberately not nested."""
    rng = np.random.default_rng(seed)
    rates = {"paper": 0.7, "mean_prob": 0.5, "mean_logits": 0.4, "member:2": 0.45}
    return {k: rng.random(200) < r for k, r in rates.items()}


def worst_case_accuracy(correct: dict) -> float:
    """Accuracy under the per-image worst case: an image counts only if every attack left it correct."""
    flags = np.array([np.asarray(v, bool) for v in correct.values()])
    return float(flags.all(0).mean())


def check_worst_case(student_fn: Callable) -> bool:
    """Check ``student_fn(correct)`` -> worst-case accuracy over attacks, per image.

    ``correct`` maps an attack (objective) name to a boolean NumPy array, one
    flag per image: still classified correctly after that attack?
    """
    correct = worst_case_problem()
    expected = worst_case_accuracy(correct)
    try:
        got = float(student_fn({k: v.copy() for k, v in correct.items()}))
    except Exception as e:  # the student's code failing is an answer to report, not a crash
        return verdict(False, f"your function raised {type(e).__name__}: {e}")
    if math.isclose(got, expected, abs_tol=1e-9):
        best = min(float(np.mean(v)) for v in correct.values())
        return verdict(True, f"correct: {expected:.1%} of the images survive every attack, below the "
                              f"{best:.1%} of the strongest single attack.")
    if math.isclose(got, 100 * expected, abs_tol=1e-6):
        return verdict(False, "that looks like a percentage; return a fraction, like np.mean does.")
    if math.isclose(got, min(float(np.mean(v)) for v in correct.values()), abs_tol=1e-9):
        return verdict(False, "that is the strongest single attack. Different attacks fool different images: "
                               "an image is robust only if it survives all of them.")
    if math.isclose(got, float(np.array(list(correct.values())).any(0).mean()), abs_tol=1e-9):
        return verdict(False, "you count an image as robust if it survives *any* attack; the attacker "
                               "picks the attack that works, so it must survive *all*.")
    return verdict(False, f"not quite: you gave {got:.4f}.")
