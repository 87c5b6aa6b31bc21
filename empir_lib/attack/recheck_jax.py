"""A re-check round's stage on a GPU, in JAX: the deterministic ensemble's survivors, closest first (issue 30).

A re-check round (:mod:`empir_lib.attack.convergence`) of the CIFAR-10
EMPIR row on 10,000 images at L2 0.5 spends about 300,000 image-steps on
each survivor in its first stage (APGD-CE at 32 times the suite's budget):
a day and a half on two cores.  This runs that stage where only JAX is
installed, on the members of a **bundle**
(:func:`empir_lib.studies.recheck_gpu.bundle`), and
:func:`empir_lib.studies.recheck_gpu.ingest` writes what it found into the
round's own resume state, where the CPU cascade continues it.

What is the same as the CPU stage (:func:`empir_lib.attack.suite.run_attack`):

* the members (Eq. 5 rounding to the nearest level) and the FP-first vote
  (:mod:`empir_lib.nets.jax_members`); the objective
  (:func:`empir_lib.attack.expected_jax.objective_stack`);
* APGD or PGD with the reference's schedule and norm
  (:mod:`empir_lib.attack.apgd_jax`), judged on the vote at every iterate,
  the first fooling iterate kept; the restarts (each its own random start);
* the order (the survivors closest first, as the round's state lists them)
  and the stop: chunks run until the breaks reach the round's tolerance.

What differs: the restarts of an image run side by side in one batch (its
odds are the same: no row looks at another); the gradient's arithmetic may
be TF32; so a break counts here only if the vote at full float32 precision
is fooled too, and it counts for the round only once the TensorFlow
ensemble, at ingest, agrees and the point is within the ball.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import EmpirError, check_positive_int
from ..nets import jax_members as jm
from . import apgd_jax
from . import expected_jax as ej

KINDS = ("apgd", "pgd")  # what runs here; a stage of another kind stays on the CPU


def vote_loss(ms: ej.Members, order: np.ndarray) -> Callable:
    """``f(x, y, key, which) -> (objective row which, the vote)`` of the deterministic ensemble (Eq. 5 nearest)."""
    order = jnp.asarray(np.asarray(order, np.int32))

    def f(x, y, key, which):
        z = jm.stack_logits(ms, x, "nearest", None)
        return ej.objective_stack(z, y)[which], jm.vote(z, order)

    return f


def stage(ms: ej.Members, order: np.ndarray, spec: dict, threat: dict, x: np.ndarray, y: np.ndarray,
          key: jax.Array, need: int, lanes: int = 4096, budget_s: float = float("inf"),
          done: Callable[[dict], object] | None = None) -> dict:
    """Attack ``x`` (survivors, in the order given) with one stage, in chunks, until ``need`` breaks or the budget.

    Each chunk holds ``lanes // restarts`` images, every image repeated
    once per restart.  After each chunk ``done(partial result)`` is called
    (the runner writes it, so a cut-short run still returns what finished).
    Returns ``attacked`` (images attacked, a prefix of ``x``; a chunk is started only if
    the last one's time still fits ``budget_s``), ``broken``
    (bool, per attacked image, judged at full precision), ``x_adv`` (their
    points: the fooling one where broken, else the best-loss one of restart 0),
    ``seconds`` and ``chunks``.
    """
    if spec["kind"] not in KINDS:
        raise EmpirError(f"stage {spec['name']!r} is a {spec['kind']} attack; only {KINDS} run in JAX.")
    restarts = check_positive_int(spec.get("restarts", 1), "restarts")
    lanes = check_positive_int(lanes, "lanes")
    per = max(1, lanes // restarts)
    which = ej.loss_index(spec["loss"], len(ms))
    loss = vote_loss(ms, order)
    judge = ej.vote_fn(ms, tuple(int(o) for o in order), "nearest")
    fixed = spec["kind"] == "pgd"
    eps = float(threat["eps"])
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    out = {"attacked": 0, "broken": np.zeros(0, bool), "x_adv": np.zeros((0, *x.shape[1:]), np.float32),
           "seconds": 0.0, "chunks": 0}
    t0 = last = time.perf_counter()
    for c in range(0, len(y), per):
        xs, ys = x[c:c + per], y[c:c + per]
        pad = per - len(ys)  # every chunk the same shape: one compiled loop
        xl = np.repeat(np.concatenate([xs, np.repeat(xs[-1:], pad, 0)]), restarts, 0)
        yl = np.repeat(np.concatenate([ys, np.repeat(ys[-1:], pad, 0)]), restarts, 0)
        r = apgd_jax.run(loss, which, xl, yl, eps, spec["n_iter"], jax.random.fold_in(key, c), threat["norm"],
                         step=spec["step_frac"] * eps if fixed else None, schedule=not fixed, momentum=not fixed,
                         track=True)
        # A lane counts only if its point fools the vote at full precision: the first fooling iterate, else the
        # best-loss one (a TF32 vote can be fooled where the float32 one is not).
        hit_first = r["broken"] & (np.asarray(judge(jnp.asarray(r["x_broken"]), None)) != yl)
        hit_best = np.asarray(judge(jnp.asarray(r["x_best"]), None)) != yl
        point = np.where(hit_first[:, None, None, None], r["x_broken"], r["x_best"])
        hit = (hit_first | hit_best).reshape(per, restarts)[:len(ys)]
        point = point.reshape(per, restarts, *x.shape[1:])[:len(ys)]
        lane = np.argmax(hit, 1)  # the first restart that broke it (restart 0 where none did)
        out["broken"] = np.concatenate([out["broken"], hit.any(1)])
        out["x_adv"] = np.concatenate([out["x_adv"], point[np.arange(len(ys)), lane]])
        out["attacked"] += len(ys)
        out["chunks"] += 1
        now = time.perf_counter()
        out["seconds"], took, last = now - t0, now - last, now
        if done is not None:
            done(out)
        if out["broken"].sum() >= need or out["seconds"] + took > budget_s:  # another chunk would not fit
            break
    return out
