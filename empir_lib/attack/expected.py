"""The robust accuracy of a randomised classifier, measured as a quantity (issue 29).

A stochastic-quantiser ensemble (:mod:`empir_lib.nets.stochastic`) gives a
random answer: the same image can be right on one query and wrong on the
next.  Its robust accuracy is defined here as an **expected accuracy**:

    for each image, the probability over the defence's randomness that its
    deployed decision (the members' vote, one draw) at the attacker's chosen
    point is correct; averaged over the images.

The attacker chooses the point; the defence then draws its noise
independently.  A deterministic network is the case with one possible draw,
where this is the usual robust accuracy.

**Estimate.**  ``R`` fresh draws at each point (:data:`DRAWS` = 32): the
per-image share of correct draws ``p_i`` is unbiased for that image's
expected accuracy, and their mean over ``n`` images for the quantity.  Its
standard error is ``sd(p_i) / sqrt(n)``: across images the estimates vary
both because images differ and because of the draws, so this one number
covers both sources (:func:`estimate` also splits it: the draws' share is
``mean(p_i (1 - p_i)) / (R - 1) / n``, an unbiased estimate of the binomial
part).  The 95% interval is the mean +- 1.96 standard errors.

**Choosing points.**  Every attack (a *stage*) proposes one point per image:
the iterate with the highest EOT-averaged loss (the mean over S draws,
Athalye et al. 2018, section 4), never the first iterate at which one lucky
draw was wrong; restarts each propose one, and the stage keeps per image the
one whose expected accuracy over R draws is lowest.  The image's robust value
is its worst case over the stages (and the clean image itself), chosen on one
set of draws and then **re-estimated on fresh draws** at the chosen point, so
that picking the lowest of several noisy estimates cannot bias it downwards.
A stage attacks only the images whose lowest estimate so far is above zero
(the cascade idea of AutoAttack, on the quantity).

**The lottery** (:func:`lottery`): the older rule "broken as soon as one of
Q queries is wrong" counts an image that is right 87% of the time as broken
when Q is large; the share it leaves falls like ``mean(p_i ** Q)`` with Q.
It is kept only as a named secondary number, beside the same count at the
clean images (the noise-only control with the same Q).
"""
from __future__ import annotations

import warnings

import numpy as np

from ..core.errors import EmpirError, check_positive_int
from ..nets import ensemble as ens_mod
from ..nets import stochastic
from . import lottery as lottery_rule

DRAWS = 32  # R: fresh draws per point
Z95 = 1.959964


class DeterministicNote(UserWarning):
    """A deterministic model was given R > 1 draws: one is used, since every draw is the same."""


def check_draws(draws: object, what: str = "R (fresh draws per point)") -> int:
    """R as an integer >= 1, or one EmpirError that says what R is."""
    try:
        return check_positive_int(draws, what)
    except EmpirError:
        raise EmpirError(f"{what} = {draws!r}: the expected accuracy needs at least one draw of the defence; "
                         f"pass an integer >= 1 (the book uses {DRAWS}).") from None


def check_samples(samples: object) -> int:
    """S (EOT samples per gradient) as an integer >= 1, or one EmpirError."""
    try:
        return check_positive_int(samples, "S")
    except EmpirError:
        raise EmpirError(f"S (EOT samples per gradient) = {samples!r}: the attack's gradient is a mean over S "
                         "draws; pass an integer >= 1.") from None


def is_random(ens: ens_mod.Ensemble) -> bool:
    """True when some member of ``ens`` rounds stochastically (draws differ)."""
    return any(stochastic.is_stochastic(m) for m in ens.members)


def effective_draws(ens: ens_mod.Ensemble, draws: object) -> int:
    """R checked; a deterministic ensemble given R > 1 gets a note (a warning) and R = 1."""
    draws = check_draws(draws)
    if draws > 1 and not is_random(ens):
        warnings.warn(f"{', '.join(ens.names)}: a deterministic ensemble answers the same on every draw; "
                      f"its expected accuracy is its accuracy, computed with 1 draw instead of {draws}.",
                      DeterministicNote, stacklevel=2)
        return 1
    return draws


def correct_rate(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, draws: int = DRAWS,
                 batch_size: int = 500, seed: int | None = None) -> np.ndarray:
    """Per image, the share of ``draws`` fresh draws whose deployed decision is the label.

    With ``seed`` the draws restart from it (:func:`empir_lib.nets.stochastic.reseed`): two calls on the
    clean and the attacked images meet the same noise, so an attack that changes nothing gains nothing
    by luck (common random numbers; the attack tasks' judge uses this).
    """
    draws = effective_draws(ens, draws)
    if seed is not None:
        for m in ens.members:
            if stochastic.is_stochastic(m):
                stochastic.reseed(m, seed)
    y = np.asarray(y).reshape(-1)
    hits = np.zeros(len(y), np.int64)
    for _ in range(draws):
        hits += ens_mod.predict(ens, x, batch_size) == y
    return hits / draws


def estimate(p: np.ndarray, draws: int) -> dict:
    """The expected accuracy of per-image estimates ``p`` (each over ``draws`` draws), with its interval.

    Returns ``mean``, ``se`` (covering the draws and the images, module
    docstring), ``lo``/``hi`` (95%), ``se_draws`` (the draws' share alone) and ``n``.
    """
    draws = check_draws(draws)
    p = np.asarray(p, float)
    if p.ndim != 1 or not len(p) or not np.all((p >= 0) & (p <= 1)):
        raise EmpirError("per-image expected accuracies must be a non-empty list of shares in [0, 1].")
    n, mean = len(p), float(p.mean())
    se = float(p.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    draw_var = float(np.mean(p * (1 - p)) / (draws - 1) / n) if draws > 1 else 0.0
    return {"mean": mean, "se": se, "lo": max(0.0, mean - Z95 * se), "hi": min(1.0, mean + Z95 * se),
            "se_draws": float(np.sqrt(draw_var)), "n": n, "draws": draws}


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """``mean(b) - mean(a)`` on the same images, with the standard error of the per-image differences."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise EmpirError("a paired comparison needs two per-image arrays of the same length (>= 2).")
    d = b - a
    se = float(d.std(ddof=1) / np.sqrt(len(d)))
    return {"diff": float(d.mean()), "se": se, "lo": float(d.mean() - Z95 * se), "hi": float(d.mean() + Z95 * se),
            "n": len(d)}


def lottery(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, queries: list[int],
            batch_size: int = 500) -> dict:
    """The "any of Q queries" rule: the share of images right on every one of Q fresh draws, per Q.

    ``queries`` is an increasing list; one run of ``max(queries)`` draws gives
    every Q (the first Q of them).  Also returns ``mean_p_power``, the same
    share predicted from the per-image shares ``p_i`` of those draws,
    ``mean(p_i ** Q)``.
    """
    queries = lottery_rule.check_queries(queries)
    effective_draws(ens, 2 if queries[-1] > 1 else 1)  # the note, for a deterministic ensemble
    y = np.asarray(y).reshape(-1)
    return lottery_rule.count(lambda q: ens_mod.predict(ens, x, batch_size) == y, len(y), queries)
