"""Exercise checks, chapter 4: low-precision members (Figures 1 and 3a)."""
from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from ...nets import quantize
from .verdict import fraction_verdict, verdict


def pareto_front(clean: dict, adv: dict) -> list[str]:
    """The members no other member beats on both axes of Figure 3a (clean and adversarial accuracy).

    A member is dominated when another has at least its clean *and* its
    adversarial accuracy and more of one of them.  Returns the others, sorted.
    """
    names = sorted(set(clean) & set(adv))

    def dominated(m):
        return any(clean[o] >= clean[m] and adv[o] >= adv[m] and (clean[o] > clean[m] or adv[o] > adv[m])
                   for o in names if o != m)

    return [m for m in names if not dominated(m)]


def check_pareto(answer: object, clean: dict, adv: dict) -> bool:
    """Check the set of undominated members (any order) for the accuracies ``clean`` and ``adv``."""
    expected = pareto_front(clean, adv)
    if isinstance(answer, str) or not hasattr(answer, "__iter__"):
        return verdict(False, f"give a list of member ids, e.g. [{expected[0]!r}, ...]; got {answer!r}.")
    got = set(answer)
    unknown = sorted(map(str, got - (set(clean) & set(adv))))
    if unknown:
        return verdict(False, f"{', '.join(unknown)}: not among the members plotted.")
    extra = sorted(got - set(expected))
    if extra:
        m = extra[0]
        better = next(o for o in sorted(set(clean) & set(adv)) if o != m and clean[o] >= clean[m]
                      and adv[o] >= adv[m] and (clean[o] > clean[m] or adv[o] > adv[m]))
        return verdict(False, f"{m} is dominated: {better} has clean {clean[better]:.1%} >= {clean[m]:.1%} "
                               f"and adversarial {adv[better]:.1%} >= {adv[m]:.1%}.")
    missing = sorted(set(expected) - got)
    if missing:
        return verdict(False, f"{len(missing)} undominated member(s) missing; no member beats "
                               f"{missing[0]} on both axes.")
    return verdict(True, f"correct: {len(expected)} points are undominated: {', '.join(expected)}.")


def flippable_fraction(x: ArrayLike, bits: int, eps: float) -> float:
    """Fraction of pixels whose ``bits``-bit quantised value some perturbation in [-eps, eps] changes.

    A low-precision MNIST/CIFAR member quantises its input image (the original
    code, appendix section 2, book/appendix_original_code.ipynb), so a pixel
    moved by an L-inf attack only reaches the network if it crosses a
    rounding threshold.  The quantiser is monotone, so trying the two ends of
    the interval (clipped to [0, 1]) is enough.
    """
    x = np.asarray(x, dtype=np.float32)
    q = lambda v: np.asarray(quantize.quantize_activations(v, bits))  # noqa: E731
    up, down = q(np.clip(x + eps, 0, 1)), q(np.clip(x - eps, 0, 1))
    here = q(x)
    return float(np.mean((up != here) | (down != here)))


def check_flippable_fraction(answer: object, x: ArrayLike, bits: int = 1, eps: float = 0.3) -> bool:
    """Check the fraction of pixels of ``x`` an eps-bounded attack can change after ``bits``-bit quantisation."""
    expected = flippable_fraction(x, bits, eps)
    got, slip = fraction_verdict(answer, expected,
                                 f"correct: {expected:.1%} of the pixels can cross a {bits}-bit rounding "
                                 f"threshold with |delta| <= {eps}; the rest of the perturbation never "
                                 "reaches conv1.", what="a fraction between 0 and 1")
    if slip is not None:
        return slip
    if math.isclose(got, 1 - expected, abs_tol=1e-3):
        return verdict(False, "that is the fraction that can NOT change; give the fraction that can.")
    return verdict(False, f"not quite: you gave {got:.4f}. A pixel changes only if x + delta lands on "
                           f"the other side of a rounding threshold, for some |delta| <= {eps}.")
