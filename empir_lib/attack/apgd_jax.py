"""APGD and fixed-step PGD in JAX (Croce & Hein 2020, Algorithm 1), for a GPU without TensorFlow.

:mod:`empir_lib.attack.apgd` is the reference (TensorFlow, on the CPU).  This
is the same loop, compiled whole (``jax.lax.fori_loop``), for the two users
that run on an accelerator:

* :mod:`empir_lib.attack.expected_jax` (issue 29): the randomised ensemble,
  each iterate's loss a fresh EOT estimate, returning the best-loss iterate;
* :mod:`empir_lib.attack.recheck_jax` (issue 30): a re-check round of a
  deterministic ensemble, where success is judged on the deployed vote at
  **every** iterate and the first iterate that fools it is kept
  (``track=True``), as the reference does.

Both norms of the reference: L-inf (sign of the gradient, clip to the box)
and L2 (the gradient over its norm, projection onto the ball, then the box;
:mod:`empir_lib.nets.steps`).  The schedule (first step ``2 eps``, momentum
0.75, step halved at the checkpoints of :mod:`empir_lib.attack.apgd_schedule`
when the loss rose in fewer than ``rho`` of the steps or the best loss did not
improve) and its bookkeeping are the reference's, line for line.  What
differs: the random starts are JAX's, and nothing leaves the batch early (a
compiled loop keeps its shape; the reference's compaction changes only time).
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..core import memo
from ..core.errors import check_choice, check_finite_number, check_positive_int
from .apgd_schedule import MOMENTUM, RHO, checkpoints

NORMS = ("linf", "l2")
# Loss functions: f(x, y, key, which) -> (per-image loss, per-image decision); the decision is read only
# when the loop tracks breaks.
LossFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _img(v: jax.Array) -> jax.Array:
    return v[:, None, None, None]


def _l2(d: jax.Array) -> jax.Array:
    return jnp.sqrt((d * d).reshape(d.shape[0], -1).sum(1))


def project(x_nat: jax.Array, x: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    """The eps ball around ``x_nat`` (L-inf or L2), then the pixel box (steps.project)."""
    if norm == "linf":
        x = jnp.clip(x, x_nat - eps, x_nat + eps)
    else:
        d = x - x_nat
        x = x_nat + d * _img(jnp.minimum(1.0, eps / (_l2(d) + 1e-12)))
    return jnp.clip(x, 0.0, 1.0)


def direction(g: jax.Array, norm: str) -> jax.Array:
    """The steepest-ascent direction of unit norm: sign (L-inf) or g / ||g|| (L2) (steps.direction)."""
    return jnp.sign(g) if norm == "linf" else g / _img(_l2(g) + 1e-12)


def random_start(key: jax.Array, x_nat: jax.Array, eps: jax.Array, norm: str) -> jax.Array:
    """A uniform point of the L-inf sphere's directions or a Gaussian direction on the L2 sphere (apgd._start)."""
    b = x_nat.shape[0]
    if norm == "linf":
        t = jax.random.uniform(key, x_nat.shape, minval=-1.0, maxval=1.0)
        t = t / _img(jnp.abs(t).reshape(b, -1).max(1) + 1e-12)
    else:
        t = jax.random.normal(key, x_nat.shape)
        t = t / _img(_l2(t) + 1e-12)
    return jnp.clip(x_nat + eps * t, 0.0, 1.0)


def run(loss: LossFn, which: int, x: np.ndarray, y: np.ndarray, eps: float, n_iter: int, key: jax.Array,
        norm: str = "linf", step: float | None = None, schedule: bool = True, momentum: bool = True,
        track: bool = False) -> dict:
    """APGD (defaults) or fixed-step PGD on a batch; every row is one run from its own random start.

    ``loss(x, y, key, which)`` returns the per-image loss and decision
    (objective row ``which``, a traced index, so one compiled loop serves every
    objective).  Returns numpy arrays: ``x_best`` (the best-loss iterate),
    ``loss_best``, and with ``track`` also ``broken`` (some iterate, the
    random start included, fooled the decision) and ``x_broken`` (the first
    such iterate; the start where none did).
    """
    check_choice(norm, NORMS, "norm")
    eps = check_finite_number(eps, "eps", 0.0, float(np.prod(np.shape(x)[1:])) if norm == "l2" else 1.0)
    n_iter = check_positive_int(n_iter, "N (iterations)")
    check, window = checkpoints(n_iter)
    fn = memo.get("apgd_jax.compiled", (id(loss), n_iter, norm, bool(track)),
                  lambda: jax.jit(_loop(loss, n_iter, norm, bool(track))), 64, keep=loss)
    step0 = 2.0 * eps if step is None else check_finite_number(step, "step", 0.0, None)
    out = fn(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32), jnp.float32(eps), jnp.float32(step0), key,
             jnp.asarray(check & schedule), jnp.asarray(np.maximum(window, 1)), jnp.int32(which),
             jnp.asarray(momentum))
    return {k: np.asarray(v) for k, v in out.items()}


def _loop(loss: LossFn, n_iter: int, norm: str, track: bool) -> Callable:
    def go(x_nat, y, eps, step0, key, check, window, which, momentum):
        def value_grad(x, k):
            # One pass for the loss, the decision and the gradient, on the same draws.
            (_, (per, pred)), g = jax.value_and_grad(
                lambda xx: (lambda v: (v[0].sum(), v))(loss(xx, y, k, which)), has_aux=True)(x)
            return per, pred, g

        b = x_nat.shape[0]
        k0, key = jax.random.split(key)
        x0 = random_start(k0, x_nat, eps, norm)
        loss0, pred0, g0 = value_grad(x0, jax.random.fold_in(key, 0))
        hist = jnp.zeros((n_iter + 1, b)).at[0].set(loss0)
        state = (x0, x0, g0, x0, g0, loss0, jnp.full((b,), step0), loss0, jnp.zeros((b,), bool), hist,
                 pred0 != y, x0)

        def body(i, st):
            x_adv, x_old, grad, x_best, grad_best, loss_best, step, best_last, reduced_last, hist, broken, x_brk = st
            a = jnp.where(momentum & (i > 0), MOMENTUM, 1.0)
            grad2 = x_adv - x_old
            x_old = x_adv
            z = project(x_nat, x_adv + _img(step) * direction(grad, norm), eps, norm)
            x_new = project(x_nat, x_adv + a * (z - x_adv) + (1.0 - a) * grad2, eps, norm)
            lo, pred, g = value_grad(x_new, jax.random.fold_in(key, i + 1))
            if track:  # the first iterate that fools the deployed decision is the one kept (apgd.py)
                fooled = pred != y
                x_brk = jnp.where(_img(fooled & ~broken), x_new, x_brk)
                broken = broken | fooled
            hist = hist.at[i + 1].set(lo)
            better = lo > loss_best
            x_best = jnp.where(_img(better), x_new, x_best)
            grad_best = jnp.where(_img(better), g, grad_best)
            loss_best = jnp.maximum(lo, loss_best)
            x_adv, grad = x_new, g
            # APGD's checkpoint rule (apgd.py); ``check`` is all False for fixed-step PGD.
            k = window[i]
            start = jnp.maximum(i - k + 1, 0)
            t_idx = jnp.arange(n_iter)[:, None]
            inside = (t_idx >= start) & (t_idx < start + k)
            rises = ((hist[1:] > hist[:-1]) & inside).sum(0).astype(jnp.float32)
            osc = rises <= k.astype(jnp.float32) * RHO
            stuck = ~reduced_last & (best_last >= loss_best)
            reduce = check[i] & (osc | stuck)
            reduced_last = jnp.where(check[i], reduce, reduced_last)
            best_last = jnp.where(check[i], loss_best, best_last)
            step = jnp.where(reduce, step / 2.0, step)
            x_adv = jnp.where(_img(reduce), x_best, x_adv)
            grad = jnp.where(_img(reduce), grad_best, grad)
            return (x_adv, x_old, grad, x_best, grad_best, loss_best, step, best_last, reduced_last, hist, broken,
                    x_brk)

        st = jax.lax.fori_loop(0, n_iter, body, state)
        out = {"x_best": st[3], "loss_best": st[5]}
        if track:
            out.update(broken=st[10], x_broken=st[11])
        return out

    return go
