"""Square (Andriushchenko et al. 2020, Algorithms 1-3), L-inf and L2, our own, judged on the vote.

Square is a gradient-free random search: each iteration proposes one change
to the perturbation and keeps it if the ensemble's margin falls.  For L-inf
(section 3.1) the change sets one square window to +-eps per channel; the
start is vertical stripes of +-eps.  For the L2
threat model the change moves perturbation mass from one square window of
side ``s`` (``window 2``) into another (``window 1``), where it adds a
"meta pseudo-Gaussian" pattern (two halves of opposite sign, weights
``1 / (k + 1)^2`` on concentric rings), and rescales window 1 so that the
whole perturbation keeps L2 norm ``eps``.  ``s`` shrinks on Square's
piecewise-constant schedule of the fraction ``p`` of pixels changed, from
``p_init = 0.1`` (the paper's L2 setting).  The start is a grid of such
patterns with random signs per image and channel, scaled to norm ``eps``.

Why our own: ART 1.20.1's ``SquareAttack(norm=2)`` divides the new window by
its target norm instead of multiplying by it
(``delta_new /= sqrt(sum delta_new^2) * sqrt(...)``), and that norm is zero
whenever the perturbation already fills the budget and the two windows hold
no mass, so its outputs turn non-finite.  Here every division by a norm has a
floor, and every output is projected onto the ball and the box before it is
returned; the cascade validates it again (:mod:`empir_lib.attack.validate`).
ART's L-inf Square has no such fault, but it draws one window place and one
sign per channel for the whole batch (the reference code draws the signs per
image), so copies of one image side by side would search the same windows.
Here every image draws its own window places and signs.

The score Square lowers is the margin of ``mean probability + one-hot(vote)``
at the label, which is positive exactly while the vote is right, so "margin
below zero" *is* "the vote is broken" and the search stops for that image.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ..core import memo
from ..core.errors import EmpirError, check_finite_number, check_positive_int
from ..nets import ensemble as ens_mod
from . import objectives, validate

P_INIT = 0.1       # Square-L2's first fraction of pixels changed (the paper's L2 setting)
P_INIT_LINF = 0.8  # Square-L-inf's: AutoAttack's choice and ART's default (the suite ran ART's before)
FLOOR = 1e-12  # the floor under every norm we divide by (ART's missing guard)
RESAMPLE = 20  # L-inf: redraws of a window's signs that would change nothing before the proposal stands


def p_selection(p_init: float, it: int, n_iters: int) -> float:
    """Square's schedule (the reference ``p_selection``): p halves at fixed shares of the iterations."""
    it = int(it / n_iters * 10000)
    for bound, div in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64), (6000, 128),
                       (8000, 256), (10000, 512)):
        if it <= bound:
            return p_init / div
    return p_init


def _rectangle(h: int, w: int) -> np.ndarray:
    """The pseudo-Gaussian rectangle: concentric rings weighted 1/(k+1)^2, unit L2 norm."""
    delta = np.zeros([h, w])
    xc, yc = h // 2 + 1, w // 2 + 1
    c0, c1 = xc - 1, yc - 1
    for k in range(max(xc, yc)):
        delta[max(c0, 0):min(c0 + 2 * k + 1, h), max(0, c1):min(c1 + 2 * k + 1, w)] += 1.0 / (k + 1) ** 2
        c0, c1 = c0 - 1, c1 - 1
    return delta / max(np.sqrt(np.sum(delta ** 2)), FLOOR)


def pattern(s: int, rng: np.random.Generator) -> np.ndarray:
    """The meta pseudo-Gaussian s x s pattern: two rectangles of opposite sign, unit norm, randomly transposed."""
    delta = np.zeros([s, s])
    delta[:s // 2] = _rectangle(s // 2, s)
    delta[s // 2:] = -_rectangle(s - s // 2, s)
    delta /= max(np.sqrt(np.sum(delta ** 2)), FLOOR)
    return delta.T if rng.random() > 0.5 else delta


def _scores_fn(ens: ens_mod.Ensemble, eot: tuple[int, str]):
    order = ens_mod.priority(ens)
    decide = None if eot == (1, "draw") else objectives.decision_fn(ens, *eot)

    @tf.function(reduce_retracing=True)
    def scores(x):
        z = ens_mod.member_logits(ens, x)
        out = ens_mod.combine(z, order, ens.rule)
        pred = out["pred"] if decide is None else decide(x)  # one pass for a deterministic ensemble
        return out["mean_prob"] + tf.one_hot(pred, ens.num_classes, dtype=out["mean_prob"].dtype)

    return scores


def _margin(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    right = scores[np.arange(len(y)), y]
    other = scores.copy()
    other[np.arange(len(y)), y] = -np.inf
    return right - other.max(1)


def _l2(d: np.ndarray, axis=(1, 2, 3)) -> np.ndarray:
    return np.sqrt(np.sum(d ** 2, axis=axis, keepdims=True))


def _to_ball(x: np.ndarray, delta: np.ndarray, eps: float) -> np.ndarray:
    """``x + eps delta / ||delta||``, in the box, and never outside the ball (float rounding included)."""
    xa = np.clip(x + eps * delta / np.maximum(_l2(delta), FLOOR), 0.0, 1.0)
    d = xa - x
    n = _l2(d)
    return np.clip(x + d * np.minimum(1.0, eps / np.maximum(n, FLOOR)), 0.0, 1.0).astype(np.float32)


def _prepare(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, queries: int, eot: tuple,
             name: str) -> tuple[np.ndarray, np.ndarray, Callable]:
    """Checked inputs and ``margin_of(xs, ys)``: the vote's margin, below zero exactly when the vote is broken."""
    queries = check_positive_int(queries, "queries")
    x = np.asarray(x, np.float32)
    y = np.asarray(y).astype(np.int64)
    if x.ndim != 4 or len(x) != len(y):
        raise EmpirError(f"{name} needs images (n, h, w, c) and n labels; got {x.shape} and {len(y)}.")
    key = (tuple(id(m) for m in ens.members), ens.rule, eot)
    scores = memo.get("square.scores", key, lambda: _scores_fn(ens, eot), 16, keep=ens)

    def margin_of(xs, ys):
        return _margin(scores(tf.constant(xs)).numpy(), ys)

    return x, y, margin_of


def _search(x: np.ndarray, y: np.ndarray, best: np.ndarray, margin_of: Callable, propose: Callable,
            queries: int, tick: Callable[[int], object] | None,
            stop: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> tuple[np.ndarray, dict]:
    """Square's random search (Algorithm 1): keep a proposal where it lowers the margin; stop once it is < 0.

    ``propose(i, todo, best[todo]) -> candidates`` draws iteration ``i``'s
    change for the images ``todo`` that still hold.
    """
    tick = tick or (lambda _k: None)
    margin = margin_of(best, y)
    steps = len(x)
    tick(len(x))
    new = np.flatnonzero(margin < 0)  # the start broke these
    if stop is not None and len(new) and stop(new, best[new]):
        return best, {"image_steps": steps}
    for i in range(queries - 1):
        todo = np.flatnonzero(margin >= 0)
        if not len(todo):
            break
        cand = propose(i, todo, best[todo])
        m = margin_of(cand, y[todo])
        steps += len(todo)
        tick(len(todo))
        better = m < margin[todo]
        best[todo[better]] = cand[better]
        margin[todo[better]] = m[better]
        new = todo[better & (m < 0)]
        if stop is not None and len(new) and stop(new, best[new]):
            break
    return best, {"image_steps": steps}


def windows(rng: np.random.Generator, m: int, s: int, h: int, w: int) -> tuple[np.ndarray, ...]:
    """An s x s window per image, each at its own random place: an index for arrays (m, h, w, c).

    The reference code (and ART) draws one place per batch; per image, side-by-side
    copies of one image (:func:`with_restarts`) search as independently as restarts.
    """
    r, c = rng.integers(0, max(h - s, 1), m), rng.integers(0, max(w - s, 1), m)
    span = np.arange(s)
    return (np.arange(m)[:, None, None], (r[:, None] + span)[:, :, None], (c[:, None] + span)[:, None, :])


def square_linf(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, eps: float, queries: int = 5000,
                seed: int = 0, p_init: float = P_INIT_LINF, eot: tuple[int, str] = (1, "draw"),
                tick: Callable[[int], object] | None = None,
                stop: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> tuple[np.ndarray, dict]:
    """Square-L-inf on a batch (Andriushchenko et al. 2020, Algorithms 1 and 2): (images, statistics).

    The start is vertical stripes of +-eps; each query sets one s x s window
    (its own place per image) to +-eps per channel, redrawn while it would change
    nothing.  Every output is finite, in the box and within eps.  ``tick`` as
    and ``stop`` as in :func:`square_l2`.  Why not ART's: its Square draws one window place and
    one sign per channel for the whole batch, and spends three forward passes
    per query where this spends one.
    """
    eps = check_finite_number(eps, "eps", 0.0, 1.0)
    x, y, margin_of = _prepare(ens, x, y, queries, eot, "Square-L-inf")
    n, h, w, c = x.shape
    if n == 0:
        return x.copy(), {"image_steps": 0}
    rng = np.random.default_rng(seed)
    lo, hi = np.maximum(x - eps, 0.0), np.minimum(x + eps, 1.0)  # the box and the ball, per pixel

    def propose(i, todo, bc):
        s = min(max(int(round(np.sqrt(p_selection(p_init, i, queries) * h * w))), 1), min(h, w) - 1)
        win = windows(rng, len(todo), s, h, w)
        cand, lo_t, hi_t = bc.copy(), lo[todo], hi[todo]
        redo = np.ones(len(todo), bool)
        for _ in range(RESAMPLE):  # a window that would stay as it is wastes a query
            signs = rng.choice([-1.0, 1.0], (int(redo.sum()), 1, 1, c))
            sub = tuple(a[redo] for a in win)
            cand[sub] = np.where(signs > 0, hi_t[sub], lo_t[sub])
            redo[redo] = np.all(np.abs(cand[sub] - bc[sub]) < 1e-7, axis=(1, 2, 3))
            if not redo.any():
                break
        return cand

    start = np.clip(x + eps * rng.choice([-1.0, 1.0], (n, 1, w, c)), lo, hi).astype(np.float32)
    return _search(x, y, start, margin_of, propose, queries, tick, stop)


def square_l2(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, eps: float, queries: int = 5000,
              seed: int = 0, p_init: float = P_INIT, eot: tuple[int, str] = (1, "draw"),
              tick: Callable[[int], object] | None = None,
              stop: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> tuple[np.ndarray, dict]:
    """Square-L2 on a batch: (adversarial images, statistics); every output finite, in the box and the ball.

    Broken images (vote != label) stop early; the others return their lowest-margin point.
    Each image draws its own window places (:func:`windows`).
    ``tick(k)``, if given, hears of every ``k`` queries as they are spent (a progress bar);
    ``stop`` as in :func:`empir_lib.attack.apgd.run` (it hears of each query's new breaks).
    """
    eps = check_finite_number(eps, "eps", 0.0, float(np.prod(np.shape(x)[1:])))
    x, y, margin_of = _prepare(ens, x, y, queries, eot, "Square-L2")
    n, h, w, c = x.shape
    if n == 0:
        return x.copy(), {"image_steps": 0}
    rng = np.random.default_rng(seed)
    # The start: a grid of (h // 5)-patterns with random signs per image and channel.
    s = max(h // 5, 1)
    delta = np.zeros_like(x, np.float64)
    sp = (h - s * 5) // 2
    for ch in range(sp, sp + 5 * s, s):
        for cw in range(sp, min(sp + 5 * s, w - s + 1), s):
            delta[:, ch:ch + s, cw:cw + s, :] += pattern(s, rng)[None, :, :, None] * rng.choice([-1, 1], (n, 1, 1, c))
    if not np.any(delta):  # images too small for the grid: a random direction instead
        delta = rng.standard_normal(x.shape)

    def propose(i, todo, bc):
        xc, m = x[todo], len(todo)
        d = (bc - xc).astype(np.float64)
        s = max(int(round(np.sqrt(p_selection(p_init, i, queries) * h * w))), 3)
        s = min(s + (s % 2 == 0), min(h, w) - 1)  # odd, as in the reference, and inside the image
        win1, win2 = windows(rng, m, s, h, w), windows(rng, m, s, h, w)
        both = np.zeros((m, h, w, 1))
        both[win1], both[win2] = 1.0, 1.0
        norm_img = _l2(d)
        norm_win1 = _l2(d[win1], (1, 2))
        norm_both = _l2(d * both, (1, 2))  # the mass the two windows hold, per channel
        new = pattern(s, rng)[None, :, :, None] * rng.choice([-1, 1], (m, 1, 1, c))
        new = new + d[win1] / np.maximum(norm_win1, FLOOR)
        # Window 1 gets the two windows' mass plus what is left of the budget (spread over channels).
        target = np.sqrt(np.maximum(eps ** 2 - norm_img ** 2, 0.0) / c + norm_both ** 2)
        d[win2] = 0.0
        d[win1] = new / np.maximum(_l2(new, (1, 2)), FLOOR) * target
        return _to_ball(xc, d, eps)

    return _search(x, y, _to_ball(x, delta, eps), margin_of, propose, queries, tick, stop)


def with_restarts(once: Callable[..., tuple[np.ndarray, int]], ens: ens_mod.Ensemble, x: np.ndarray,
                  y: np.ndarray, threat: dict, restarts: int, seed: int, eot: tuple = (1, "draw"),
                  batch_size: int = 500, stop: Callable[[np.ndarray, np.ndarray], bool] | None = None
                  ) -> tuple[np.ndarray, int]:
    """A gradient-free attack's restarts, each on the images no earlier restart broke: (images, image-steps).

    ``once(x, y, seed, stop) -> (adversarial images, image-steps)`` is one run
    (``stop`` as in :func:`empir_lib.attack.apgd.run`, in the copies' indices;
    this passes it on in ``x``'s, and ends after the wave it stopped).  As
    APGD does (:func:`empir_lib.attack.apgd.run`), when few images are left
    the next restarts run side by side as copies of each image in one call;
    an image takes the first copy that is valid and fools the vote, else its
    first copy.  Copies draw their own start, window places and signs
    (:func:`windows`), so side by side they search as independently as
    restarts with their own seeds.
    """
    best, left, r, steps = np.asarray(x, np.float32).copy(), np.ones(len(y), bool), 0, 0
    while r < restarts and left.any():
        idx = np.flatnonzero(left)
        wave = min(restarts - r, max(1, batch_size // len(idx)))
        xs, ys = np.tile(x[idx], (wave, 1, 1, 1)), np.tile(y[idx], wave)
        inner = None if stop is None else (lambda i, xb, idx=idx: stop(idx[i % len(idx)], xb))  # copy -> image
        xa, more = once(xs, ys, seed + r, inner)
        steps += more
        hit = (validate.valid(xs, xa, threat) & (objectives.deployed(ens, xa, *eot) != ys)).reshape(wave, -1)
        pick = np.where(hit.any(0), hit.argmax(0), 0)  # per image: the first copy that broke it
        best[idx] = xa.reshape(wave, len(idx), *x.shape[1:])[pick, np.arange(len(idx))]
        left[idx] = ~hit.any(0)
        r += wave
        if stop is not None and hit.any() and stop(idx[hit.any(0)], best[idx[hit.any(0)]]):
            break  # it has heard of these already: True means it had stopped the wave above
    return best, steps
