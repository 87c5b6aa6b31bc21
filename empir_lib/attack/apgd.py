"""Auto-PGD (Croce & Hein 2020) and fixed-step PGD, judged on the deployed decision at every iterate.

APGD (their Algorithm 1) is PGD with three changes that remove the step size
as a free parameter:

* the first step is ``2 eps``; after it, each step mixes the new projected
  point with the previous move (momentum ``alpha = 0.75``):
  ``z = P(x_k + eta sign(g_k))``,
  ``x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))``;
* at checkpoints ``w_j`` (the first after 22% of the iterations, then at
  shrinking intervals, never below 6%) the step ``eta`` halves, and the
  iterate restarts from the best point so far, when the loss rose in fewer
  than ``rho = 75%`` of the steps since the last checkpoint, or when the step
  was not halved last time and the best loss has not improved since;
* every iterate is kept if it is the best so far.

We follow the reference implementation (``autopgd_base.py`` of
fra31/auto-attack) in each of these, with one deliberate difference: success
is judged on the **deployed decision** returned by the loss function (the
vote), at *every* iterate, and the first iterate that fools it is returned
("best iterate", the guide's rule for a defence whose decision is not the
argmax of the objective).  The oscillation count at the first checkpoint
compares the first step with the loss at the random start (the reference
compares it with an unfilled zero).

**Compaction.**  The iterations run in segments inside one ``tf.function``
(the first ends after 2 iterations, the next after 5, then every
``segment``); between segments the images already broken leave the
batch.  For an image the result is the same as without compaction (the
per-image schedule never looks at other images), but an ensemble that is
broken on 99% of images after 10 steps costs about 10 steps per image, not
100.  This is the cascade's idea applied inside one attack.

``pgd`` is the same loop with a fixed step, no momentum and no checkpoints.
Both work for L-infinity (sign of the gradient, clip to the box) and L2
(normalised gradient, projection onto the ball).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from ..core import memo
from ..core.errors import EmpirError, check_choice, check_finite_number, check_positive_int
from ..nets.metrics import CLIP
from ..nets.steps import direction, l2_norms, per_image, project
from .apgd_schedule import MOMENTUM, RHO, checkpoints

NORMS = ("linf", "l2")


class Outcome(NamedTuple):
    """What one attack did to a batch: per-image arrays (numpy), all of length n."""

    x_adv: np.ndarray       # the first iterate that fooled the decision, else the last best-loss point
    broken: np.ndarray      # bool: some iterate fooled the deployed decision
    loss_start: np.ndarray  # loss at the (first) random start
    loss_best: np.ndarray   # best loss reached (for images never broken: at the end)
    zero_grad: np.ndarray   # bool: the gradient at the start was exactly zero
    steps: int              # image-steps spent (forward + backward passes), for the benchmarks


def segments(n_iter: int, segment: int = 10) -> list[int]:
    """Where compaction happens: after iterations 2 and 5, then every ``segment`` (bounds incl. 0 and n_iter).

    Most images an attack breaks fall in its first few steps; looking early
    lets them leave the batch before they cost ten steps each.
    """
    if segment >= n_iter:  # no compaction at all (the benchmarks' baseline)
        return [0, n_iter]
    early = [b for b in (2, 5) if b < segment]
    return sorted({0, *early, *range(segment, n_iter, segment), n_iter})


def loss_decision_gradient(fn: Callable, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(loss, decision, gradient of the summed loss)`` of a suite loss function at ``x``."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss, pred = fn(x, y)
        total = tf.reduce_sum(loss)
    # A loss that does not depend on x (a masked model) has a zero gradient, not None.
    return loss, pred, tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)


# State rows, all per image: the current and previous iterates and gradient,
# the best-loss point and its gradient, the step size, the bookkeeping of the
# last checkpoint, the loss history (iterations + 1, batch), and the first
# iterate that fooled the decision.
_FIELDS = ("x_adv", "x_old", "grad", "x_best", "grad_best", "loss_best", "step", "best_last_check",
           "reduced_last", "hist", "broken", "x_broken")
# The state is a plain tuple (what the traced segment takes and returns); outside it, read it by name.
_AT = {name: k for k, name in enumerate(_FIELDS)}


def _make_segment(fn, norm: str, clip, schedule: bool, momentum: bool):
    # One traced segment per loss function and variant: a caller that reuses its
    # loss function (the suite does) traces once, not once per batch.
    key = (fn, norm, tuple(clip), schedule, momentum)
    return memo.get("apgd.segments", key, lambda: _trace_segment(fn, norm, clip, schedule, momentum), 128)


def _trace_segment(fn, norm: str, clip, schedule: bool, momentum: bool):
    @tf.function(reduce_retracing=True)
    def segment(st, x_nat, y, eps, i0, i1, check, window):
        x_adv, x_old, grad, x_best, grad_best, loss_best, step, best_last, reduced_last, hist, broken, x_broken = st
        for i in tf.range(i0, i1):
            # The batch shrinks between segments: keep its size free, or a one-image batch
            # traced with a known size fails to match the loop's relaxed shapes.
            tf.autograph.experimental.set_loop_options(shape_invariants=[
                (v, tf.TensorShape([None, *v.shape[1:]])) for v in (x_adv, x_old, grad, x_best, grad_best, x_broken)
            ] + [(v, tf.TensorShape([None])) for v in (loss_best, step, best_last, reduced_last, broken)]
              + [(hist, tf.TensorShape([hist.shape[0], None]))])
            a = tf.where(tf.logical_and(momentum, i > 0), MOMENTUM, 1.0)
            grad2 = x_adv - x_old
            x_old = x_adv
            z = project(x_nat, x_adv + per_image(step) * direction(grad, norm), eps, norm, clip)
            x_new = project(x_nat, x_adv + a * (z - x_adv) + (1.0 - a) * grad2, eps, norm, clip)
            loss, pred, g = loss_decision_gradient(fn, x_new, y)
            fooled = tf.not_equal(pred, y)
            x_broken = tf.where(per_image(tf.cast(fooled & ~broken, x_new.dtype)) > 0, x_new, x_broken)
            broken = broken | fooled
            hist = tf.tensor_scatter_nd_update(hist, [[i + 1]], loss[None])
            better = loss > loss_best
            x_best = tf.where(per_image(tf.cast(better, x_new.dtype)) > 0, x_new, x_best)
            grad_best = tf.where(per_image(tf.cast(better, x_new.dtype)) > 0, g, grad_best)
            loss_best = tf.maximum(loss, loss_best)
            x_adv, grad = x_new, g
            if schedule:
                k = window[i]
                span = tf.slice(hist, [tf.maximum(i - k + 1, 0), 0], [k + 1, -1])
                rises = tf.reduce_sum(tf.cast(span[1:] > span[:-1], tf.float32), 0)
                osc = rises <= tf.cast(k, tf.float32) * RHO
                stuck = ~reduced_last & (best_last >= loss_best)
                reduce = check[i] & (osc | stuck)
                reduced_last = tf.where(check[i], reduce, reduced_last)
                best_last = tf.where(check[i], loss_best, best_last)
                step = tf.where(reduce, step / 2.0, step)
                rb = per_image(tf.cast(reduce, x_new.dtype)) > 0
                x_adv = tf.where(rb, x_best, x_adv)
                grad = tf.where(rb, grad_best, grad)
        return (x_adv, x_old, grad, x_best, grad_best, loss_best, step, best_last, reduced_last, hist, broken,
                x_broken)

    return segment


def _start(fn, x_nat, y, eps, norm, clip, seed):
    shape = tf.shape(x_nat)
    if norm == "linf":
        t = tf.random.stateless_uniform(shape, seed, -1.0, 1.0)
        t = t / per_image(tf.reduce_max(tf.abs(tf.reshape(t, [shape[0], -1])), 1) + 1e-12)
    else:
        t = tf.random.stateless_normal(shape, seed)
        t = t / per_image(l2_norms(t) + 1e-12)
    x0 = tf.clip_by_value(x_nat + per_image(eps) * t, *clip)
    loss, pred, g = loss_decision_gradient(fn, x0, y)
    return x0, loss, pred, g


def run(fn: Callable, x: np.ndarray, y: np.ndarray, eps: float | np.ndarray, norm: str = "linf", n_iter: int = 100,
        restarts: int = 1, seed: int = 0, step: float | None = None, schedule: bool = True,
        momentum: bool = True, segment: int = 10, clip: tuple[float, float] = CLIP,
        batch_size: int = 500, groups: np.ndarray | None = None,
        tick: Callable[[int], object] | None = None,
        stop: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> Outcome:
    """Run APGD (defaults) or fixed-step PGD (``schedule=momentum=False, step=...``) on numpy images.

    ``fn(x, y) -> (loss, decision)`` comes from :func:`empir_lib.attack.objectives.loss_fn`.
    Restarts run on the images no earlier restart broke, each from a new
    random start.  ``eps`` is one budget, or one per image (an array of
    length n: the minimal-norm search bisects each image's budget); a
    fixed ``step`` is the same for every image.  ``groups`` (one id per
    image) marks images that are copies of one picture (APGD-T's target
    classes): once any copy is broken, the others stop too.  ``tick(k)``, if
    given, hears of every ``k`` image-steps as they are spent (a progress bar).
    ``stop(images, x_adv)``, if given, hears of the images newly broken (their
    indices and adversarial images) whenever some leave the batch; once it
    returns True the run ends there (a re-check round that has already moved:
    :func:`empir_lib.attack.suite.cascade`'s ``stop_after``), and images it had
    not finished count as not broken.
    Returns an :class:`Outcome` (per image; a copy stopped by another is not broken).

    **Restarts side by side.**  When fewer images are left than fit in a
    batch, the next restarts run as extra rows of the same batch, not one
    after another.  A row's random start and step schedule never look at
    other rows, so each image's odds are the same; the batches are fuller,
    which on a CPU is most of the speed when a re-check attacks a few
    survivors with many restarts (``benchmarks/README.md``, "Restarts side by side").
    """
    check_choice(norm, NORMS, "norm")
    hi = float(np.prod(x.shape[1:])) if norm == "l2" else 1.0
    eps_arr = np.asarray(eps, np.float64)
    if eps_arr.ndim == 0:
        eps_arr = np.full(len(x), check_finite_number(eps, "eps", 0.0, hi))
    elif eps_arr.shape != (len(x),) or not np.all(np.isfinite(eps_arr)) or eps_arr.min(initial=0) < 0 \
            or eps_arr.max(initial=0) > hi:
        raise EmpirError(f"eps must be one number or one finite number in [0, {hi:g}] per image; "
                         f"got shape {eps_arr.shape}.")
    eps_arr = eps_arr.astype(np.float32)
    n_iter = check_positive_int(n_iter, "n_iter")
    restarts = check_positive_int(restarts, "restarts")
    segment = check_positive_int(segment, "segment")
    batch_size = check_positive_int(batch_size, "batch_size")
    if len(x) != len(y):
        raise EmpirError(f"{len(x)} images but {len(y)} labels.")
    # APGD's first step is 2 eps (per image); fixed-step PGD takes ``step`` as given.
    step0 = 2.0 * eps_arr if step is None else np.full(len(x), check_finite_number(step, "step", 0.0, None),
                                                       np.float32)
    check, window = checkpoints(n_iter)
    check_t = tf.constant(check & schedule)
    window_t = tf.constant(np.maximum(window, 1))
    seg_fn = _make_segment(fn, norm, clip, schedule, momentum)
    bounds = segments(n_iter, segment)
    n = len(x)
    x = np.asarray(x, np.float32)
    y = np.asarray(y).astype(np.int32)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    tick = tick or _silent
    if groups.shape != (n,):
        raise EmpirError(f"groups must hold one id per image ({n}); got shape {groups.shape}.")
    out_x, broken = x.copy(), np.zeros(n, bool)
    loss_start, loss_best = np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)
    zero_grad = np.zeros(n, bool)
    steps, r = 0, 0
    reported = np.zeros(n, bool)  # breaks ``stop`` has heard of

    def halt() -> bool:
        new = broken & ~reported
        reported[new] = True
        return stop is not None and bool(new.any()) and bool(stop(np.flatnonzero(new), out_x[new]))

    halted = False
    while r < restarts and not halted:
        todo = np.flatnonzero(~np.isin(groups, groups[broken]))
        if not len(todo):
            break
        wave = min(restarts - r, max(1, batch_size // len(todo)))  # restarts run side by side (docstring)
        lanes, lane_r = np.tile(todo, wave), np.repeat(np.arange(r, r + wave), len(todo))
        for b in range(0, len(lanes), batch_size):
            if halted:
                break
            idx, first = lanes[b:b + batch_size], lane_r[b:b + batch_size] == 0
            xb, yb, eb = tf.constant(x[idx]), tf.constant(y[idx]), tf.constant(eps_arr[idx])
            x0, loss0, pred0, g0 = _start(fn, xb, yb, eb, norm, clip, tf.constant([seed, r * 7919 + b], tf.int64))
            steps += len(idx)
            tick(len(idx))
            if first.any():
                loss_start[idx[first]] = loss0.numpy()[first]
                flat = tf.reshape(g0, [len(idx), -1])
                zero_grad[idx[first]] = tf.reduce_all(tf.equal(flat, 0.0), 1).numpy()[first]
            fooled0 = tf.not_equal(pred0, yb)
            hist = tf.tensor_scatter_nd_update(tf.zeros([n_iter + 1, len(idx)]), [[0]], loss0[None])
            st = (x0, x0, g0, x0, g0, loss0, tf.constant(step0[idx], tf.float32), loss0,
                  tf.zeros([len(idx)], tf.bool), hist, fooled0, x0)
            active = np.arange(len(idx))  # rows of this batch still in the state
            for i0, i1 in zip(bounds[:-1], bounds[1:]):
                rows_broken = st[_AT["broken"]].numpy()
                gone = np.isin(groups[idx[active]], np.concatenate([groups[idx[active][rows_broken]],
                                                                    groups[broken]]))
                if gone.all():
                    break
                if gone.any():  # compaction: broken images (and their other copies) leave the batch
                    _finish(st, gone, idx[active], out_x, broken, loss_best)
                    keep = np.flatnonzero(~gone)
                    st = tuple(tf.gather(s, keep, axis=1) if j == 9 else tf.gather(s, keep)
                               for j, s in enumerate(st))
                    active = active[keep]
                    xb, yb, eb = tf.gather(xb, keep), tf.gather(yb, keep), tf.gather(eb, keep)
                    if halt():
                        halted = True
                        break
                st = seg_fn(st, xb, yb, eb, tf.constant(i0), tf.constant(i1),
                            check_t, window_t)
                steps += len(active) * (i1 - i0)
                tick(len(active) * (i1 - i0))
            if not halted:
                _finish(st, np.ones(len(active), bool), idx[active], out_x, broken, loss_best)
                halted = halt()
        r += wave
    return Outcome(out_x, broken, loss_start, loss_best, zero_grad, steps)


def _silent(_k: int) -> None:
    return None


def _finish(st, rows, idx, out_x, broken, loss_best) -> None:
    """Copy the finished rows of a state into the outputs (restarts only ever add breaks)."""
    b = st[_AT["broken"]].numpy()[rows]
    xb, xbest, lb = (st[_AT[name]].numpy()[rows] for name in ("x_broken", "x_best", "loss_best"))
    tgt = idx[rows]
    for j, i in enumerate(tgt):
        if b[j]:
            out_x[i], broken[i] = xb[j], True
        elif not broken[i]:
            out_x[i] = xbest[j]
        loss_best[i] = lb[j] if np.isnan(loss_best[i]) else max(loss_best[i], lb[j])
