"""Exercise checks, chapter 5: ensembling rules (paper section 3.2)."""
from __future__ import annotations

import math
import types
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ...nets import ensemble
from .verdict import as_float_array, call_for_number, first_wrong_class, verdict


def reference_vote(votes: ArrayLike, fp: Sequence[bool]) -> np.ndarray:
    """Max voting with the FP-first tie-break, computed by :func:`empir_lib.nets.ensemble.vote`.

    ``votes`` is an int array (members, images) of each member's class and
    ``fp`` says which members are full precision.  Each vote becomes a
    one-hot logit vector, so the library's vote sees exactly these classes.
    """
    votes = np.asarray(votes, dtype=np.int64)
    order = ensemble.priority(types.SimpleNamespace(fp=tuple(bool(f) for f in fp)))
    logits = np.eye(int(votes.max()) + 1, dtype=np.float32)[votes]
    return np.asarray(ensemble.vote(logits, order)[0], dtype=np.int64)


def vote_cases(seed: int = 0) -> list[tuple[np.ndarray, tuple]]:
    """Test cases for a vote: 2 to 5 members, FP members anywhere, few classes so that ties are common."""
    rng = np.random.default_rng(seed)
    cases = [(np.array([[0, 1, 2], [1, 1, 0], [2, 0, 1]]).T, (False, False, True)),  # EMPIR's three members
             (np.array([[3], [5], [7]]), (True, False, False)),                       # FP first in the list
             (np.array([[1], [2], [2], [1]]), (False, True, False, False)),           # 2-2 tie, FP decides
             (np.array([[4], [6], [8]]), (False, False, False))]                      # no FP: first member
    for k in (2, 3, 4, 5):
        for _ in range(6):
            fp = tuple(bool(b) for b in rng.integers(0, 2, k))
            cases.append((rng.integers(0, 4, (k, 40)), fp))
    return cases


def check_vote(student_fn: Callable) -> bool:
    """Compare a student's max vote with the library's (FP-first tie-break) on many small ensembles.

    ``student_fn(votes, fp)`` takes an int array (members, images) of the
    members' classes and a tuple of bools (is member i full precision?) and
    returns the ensemble's class per image.
    """
    cases = vote_cases()
    for votes, fp in cases:
        expected = reference_vote(votes, fp)
        got, i, problem = first_wrong_class(student_fn, (votes.copy(), fp), expected)
        if problem:
            return verdict(False, problem)
        if i is not None:
            return verdict(False, f"votes {votes[:, i].tolist()} with full-precision flags {list(fp)}: "
                                   f"you return {got[i]}, the rule gives {expected[i]}.")
    return verdict(True, f"correct: your vote matches ensemble.vote on {sum(v.shape[1] for v, _ in cases)} "
                          f"images from {len(cases)} ensembles of 2 to 5 members.")


def rule_predictions(probs: ArrayLike, fp: Sequence[bool] = (False, False, True)) -> dict:
    """The classes the vote and the average pick for members' probabilities ``probs`` (members, images, classes)."""
    p = np.asarray(probs, dtype=np.float32)
    order = ensemble.priority(types.SimpleNamespace(fp=tuple(bool(f) for f in fp)))
    # log p are logits whose softmax is p again, so combine() sees these very probabilities
    logits = np.log(np.maximum(p, 1e-30))
    return {rule: np.asarray(ensemble.combine(logits, order, rule)["pred"]) for rule in ("vote", "average")}


def check_rules_disagree(probs: ArrayLike, fp: Sequence[bool] = (False, False, True)) -> bool:
    """Check that the members' probabilities ``probs`` (members, classes) make voting and averaging disagree."""
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError):
        return verdict(False, f"give one row of class probabilities per member; got {probs!r}.")
    if p.ndim != 2 or p.shape[0] != len(fp) or p.shape[1] < 2:
        return verdict(False, f"give a ({len(fp)} members x classes) array, one probability vector per "
                               f"member; got shape {p.shape}.")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.allclose(p.sum(1), 1, atol=1e-3):
        return verdict(False, "every row must be a probability vector: non-negative, summing to 1.")
    preds = rule_predictions(p[:, None, :], fp)
    v, a = int(preds["vote"][0]), int(preds["average"][0])
    if v == a:
        return verdict(False, f"both rules pick class {v}. Try two members that narrowly prefer one class "
                               f"and one member that is very sure of another.")
    return verdict(True, f"correct: the vote picks class {v}, the average picks class {a}.")


def prob_as_logits_loss_range(num_classes: int = 10) -> tuple[float, float]:
    """Smallest and largest softmax cross-entropy when *probabilities* are fed in as logits.

    The original code does this (its appendix section 0.4, book/appendix_original_code.ipynb).

    L(p) = logsumexp(p) - p_y is convex in p, so over the probability simplex
    its maximum lies at a vertex; its minimum does too, at p = e_y (every
    direction into the simplex from there goes uphill, since
    softmax(e_y)_y < 1).  So the vertices, computed here with TensorFlow's
    own loss, give both ends.
    """
    vertices = np.eye(num_classes, dtype=np.float32)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=np.zeros(num_classes, np.int32), logits=vertices)
    loss = np.asarray(loss, dtype=np.float64)
    return float(loss.min()), float(loss.max())


def check_prob_as_logits_range(answer: object, num_classes: int = 10) -> bool:
    """Check (smallest, largest) loss of the original's FGSM/PGD objective for ``num_classes`` classes."""
    lo, hi = prob_as_logits_loss_range(num_classes)
    got, why = as_float_array(answer, "your (smallest, largest) pair")
    if got is None:
        return verdict(False, why)
    if got.size != 2:
        return verdict(False, f"give two numbers, (smallest, largest); you gave {got.size}.")
    g_lo, g_hi = sorted(got)
    if math.isclose(g_lo, lo, abs_tol=1e-3) and math.isclose(g_hi, hi, abs_tol=1e-3):
        return verdict(True, f"correct: the loss stays in [{lo:.4f}, {hi:.4f}], a band exactly 1 wide, "
                              f"however sure or wrong the ensemble is.")
    if math.isclose(g_lo, 0, abs_tol=1e-3):
        return verdict(False, "0 is the minimum of cross-entropy on real logits (or log-probabilities); "
                               "here the 'logits' are probabilities, between 0 and 1.")
    if math.isclose(g_hi - g_lo, 1, abs_tol=1e-3):
        return verdict(False, "the width is right (1) but the ends are not.")
    return verdict(False, f"not quite: you gave ({g_lo:.4f}, {g_hi:.4f}). Evaluate the loss at p = e_y "
                           f"and at p = e_j for j != y.")


BROKEN_CASES = ((0.05, 1), (0.05, 10), (0.05, 100), (0.01, 1000), (0.5, 3), (0.0, 50), (1.0, 1), (0.2, 0))


def broken_chance(p: float, queries: int) -> float:
    """The chance that a random classifier wrong with probability ``p`` is wrong at least once in ``queries``.

    The draws are independent, so the image survives every query with
    probability ``(1 - p) ** queries``; an evaluator that counts an image as
    broken once any query errs counts it with the complement.
    """
    return 1.0 - (1.0 - p) ** queries


def check_broken_chance(student_fn: Callable) -> bool:
    """Check ``student_fn(p, q)`` -> the chance of at least one error in ``q`` independent queries."""
    for p, q in BROKEN_CASES:
        expected = broken_chance(p, q)
        got, error = call_for_number(student_fn, p, q)
        if error:
            return verdict(False, error)
        if math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
            continue
        if math.isclose(got, 1 - expected, rel_tol=1e-6, abs_tol=1e-9):
            return verdict(False, f"p={p}, q={q}: that is the chance that every query is right; the question "
                                  "asks for the chance that at least one is wrong.")
        if math.isclose(got, min(1.0, p * q), rel_tol=1e-6) or math.isclose(got, p * q, rel_tol=1e-6):
            return verdict(False, f"p={p}, q={q}: p times q adds the chances as if the errors could not "
                                  "happen together (and passes 1 for many queries); go through the chance "
                                  "that no query errs.")
        if math.isclose(got, 1 - p ** q, rel_tol=1e-6, abs_tol=1e-9):
            return verdict(False, f"p={p}, q={q}: p ** q is the chance that every query errs; one error "
                                  "is enough.")
        return verdict(False, f"p={p}, q={q}: you return {got:.5g}, expected {expected:.5g}.")
    return verdict(True, "correct: an image the classifier gets right 95% of the time is counted broken "
                         f"with probability {broken_chance(0.05, 10):.2f} after 10 queries and "
                         f"{broken_chance(0.05, 100):.3f} after 100, with no attack at all. Robust accuracy "
                         "of a random classifier must be an expectation over its randomness, not the share "
                         "of images it never got wrong.")
