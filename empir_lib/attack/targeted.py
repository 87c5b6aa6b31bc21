"""APGD-T: targeted APGD on the DLR-targeted loss over the top target classes (Croce & Hein 2020, section 3.2).

A 2-of-3 vote is broken by pushing two members towards the *same* wrong
class; an untargeted loss may instead spread the members over different wrong
classes and leave the true class on top of the vote.  AutoAttack's APGD-T
picks the target for it: for each of the ``targets`` classes the ensemble
ranks highest after the true one (on the clean image's mean logits), one APGD
run ascends the **targeted DLR loss** (their Eq. 4) of the members' mean
logits ``z``::

    DLR_T(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)

where ``z_pi1 >= z_pi2 >= ...`` are the sorted logits.  Like the untargeted
DLR it is invariant to the logits' scale and shift.  AutoAttack's schedule is
kept: 100 iterations and one random start per target class, 9 target classes
(all classes but the true one on CIFAR-10 and MNIST).  An image counts as
broken as soon as any iterate of any target run changes the **deployed
decision** (the vote) away from the true label, whatever class it lands on,
and the target runs stop for it; each target's run sees only the images every
earlier target failed on.

:func:`empir_lib.attack.apgd.run` judges an iterate by ``decision != label``.
To pass a target per image through it unchanged, a label here is encoded as
``y * C + t`` (``C`` classes) and the decision returned as ``vote * C + t``,
which differs from the encoded label exactly when the vote differs from ``y``.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ..core.errors import EmpirError, check_positive_int
from ..nets import ensemble as ens_mod
from ..nets.metrics import LossFn
from . import apgd, objectives

LOSS = "dlr_targeted_mean_logits"
TARGETS = 9  # AutoAttack's n_target_classes


def dlr_targeted(z: tf.Tensor, y: tf.Tensor, t: tf.Tensor) -> tf.Tensor:
    """Croce & Hein's targeted DLR loss (Eq. 4) of logits ``z`` (batch, classes); needs >= 4 classes."""
    top = tf.math.top_k(z, 4).values
    zy = tf.gather(z, y, batch_dims=1)
    zt = tf.gather(z, t, batch_dims=1)
    return -(zy - zt) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def loss_fn(ens: ens_mod.Ensemble, eot_samples: int = 1, decision: str = "draw") -> LossFn:
    """``f(x, y * C + t) -> (DLR_T of the mean logits, vote * C + t)`` (module docstring), EOT as in objectives."""
    if ens.num_classes < 4:
        raise EmpirError("the targeted DLR loss needs at least 4 classes.")
    c = ens.num_classes
    order = ens_mod.priority(ens)

    def plain(x: tf.Tensor, yt: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        z = ens_mod.member_logits(ens, x)
        pred = ens_mod.combine(z, order, ens.rule)["pred"]
        return dlr_targeted(tf.reduce_mean(z, 0), yt // c, yt % c), tf.cast(pred, yt.dtype)

    inner = plain if eot_samples == 1 else objectives.expectation(plain, eot_samples, decision, c)

    def f(x: tf.Tensor, yt: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        loss, pred = inner(x, yt)
        return loss, tf.cast(pred, yt.dtype) * c + yt % c

    return f


def target_ranking(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, targets: int,
                   batch_size: int = 500) -> np.ndarray:
    """(n, targets): per image, the classes other than ``y`` in decreasing order of the clean mean logits."""
    targets = check_positive_int(targets, "targets")
    if targets > ens.num_classes - 1:
        raise EmpirError(f"{targets} target classes asked for; this ensemble has only {ens.num_classes - 1} "
                         "wrong classes.")
    z = np.concatenate([tf.reduce_mean(ens_mod.member_logits(ens, tf.constant(x[i:i + batch_size])), 0).numpy()
                        for i in range(0, len(x), batch_size)]) if len(x) else np.zeros((0, ens.num_classes))
    z[np.arange(len(y)), y] = -np.inf  # the true class is never a target
    return np.argsort(-z, axis=1, kind="stable")[:, :targets]


def run(ens: ens_mod.Ensemble, fn: LossFn, x: np.ndarray, y: np.ndarray, eps: float, norm: str,
        n_iter: int = 100, restarts: int = 1, targets: int = TARGETS, seed: int = 0,
        batch_size: int = 500, tick: Callable[[int], object] | None = None,
        stop: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> tuple[np.ndarray, dict]:
    """APGD-T on a batch: (adversarial images, statistics), one APGD run per target class on the survivors.

    ``fn`` is :func:`loss_fn` of ``ens`` (the caller caches it, so that one
    traced APGD segment serves every batch).  Returns the first iterate that
    fooled the vote for broken images, else the last target run's best point.
    When few images are left, the next target classes run side by side as
    copies of each image (``apgd.run``'s ``groups``: a copy stops once another
    broke its image), as restarts do: each target's run is the same per image.
    ``stop`` as in :func:`empir_lib.attack.apgd.run`, in this batch's image indices.
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y).astype(np.int64)
    ranked = target_ranking(ens, x, y, targets)
    n_t = ranked.shape[1]
    out, broken = x.copy(), np.zeros(len(y), bool)
    # Breaks per target rank: what the cost of each further target class buys (the choice of 9).
    stats = {"image_steps": 0, "zero_grad": 0, "no_progress": 0, "broken_per_target": [0] * n_t}
    k = 0
    while k < n_t:
        todo = np.flatnonzero(~broken)
        if not len(todo):
            break
        wave = min(n_t - k, max(1, batch_size // len(todo)))
        rows, ks = np.tile(todo, wave), np.repeat(np.arange(k, k + wave), len(todo))
        yt = y[rows] * ens.num_classes + ranked[rows, ks]
        inner = None if stop is None else (lambda i, xa, rows=rows: stop(rows[i], xa))  # copies -> images
        res = apgd.run(fn, x[rows], yt, eps, norm, n_iter, restarts, seed + 104_729 * k, batch_size=batch_size,
                       groups=rows, tick=tick, stop=inner)
        stats["image_steps"] += res.steps
        left = np.ones(len(todo), bool)  # images of todo no target of this wave has broken yet
        for j in range(wave):  # a break counts for the first target (in rank order) that found it
            block = slice(j * len(todo), (j + 1) * len(todo))
            new = left & res.broken[block]
            out[todo[new]] = res.x_adv[block][new]
            stats["broken_per_target"][k + j] = int(new.sum())
            left &= ~new
        if k == 0:
            stats["zero_grad"] = int(res.zero_grad[:len(todo)].sum())
        last = slice((wave - 1) * len(todo), wave * len(todo))
        out[todo[left]] = res.x_adv[last][left]
        if k + wave == n_t:  # the last target: did the optimiser move on the images that survived it?
            done = left & np.isfinite(res.loss_best[last])  # a stop leaves rows unfinished (NaN)
            stats["no_progress"] = int(np.sum(done & ~(res.loss_best[last] > res.loss_start[last])))
        broken[todo] = ~left
        k += wave
        if stop is not None and (~left).any() and stop(todo[~left], out[todo[~left]]):
            break  # it has heard of these already: True means it had stopped the run above
    return out, stats
