"""What a worst-case attacker differentiates, and what it is judged on.

An EMPIR ensemble *deploys* a decision (the 2-of-3 vote, or the argmax of the
mean probability for an averaging ensemble, paper section 3.2) that has no
useful gradient.  An attacker therefore climbs a differentiable **objective**
loss of the members' logits, but counts an image as broken only when the
*deployed decision* is wrong (Tramer et al. 2020, section 3; Carlini et al.
2019, "On evaluating adversarial robustness", section 4).  Each function built
here returns both from one forward pass through the members, so judging every
iterate on the vote costs nothing extra.

The objectives (``z_k`` are member k's logits, ``K`` members, ``y`` the label):

* ``ce_mean_prob``: ``-log( mean_k softmax(z_k)[y] )``, the cross-entropy of
  the ensemble's mean probability;
* ``ce_sum``: ``sum_k CE(z_k, y)``, every member pushed at once;
* ``dlr_mean_logits``: Croce & Hein's (2020) difference-of-logits ratio,
  ``-(zbar_y - max_{j!=y} zbar_j) / (zbar_pi1 - zbar_pi3)``, on the mean
  logits ``zbar``; it is invariant to the logits' scale, so a saturated
  softmax cannot hide the gradient;
* ``margin_mean_logits``: Carlini & Wagner's margin ``max_{j!=y} zbar_j - zbar_y``;
* ``ce_member:<i>`` and ``margin_member:<i>``: member i alone, judged on the
  whole ensemble's decision; for the full-precision member this is the
  transfer attack from the FP member.

**EOT** (Expectation over Transformation, Athalye et al. 2018, section 4):
against members that round stochastically (:mod:`empir_lib.nets.stochastic`) a
single gradient is one draw of a random function.  With ``eot_samples = S > 1``
each call runs S stochastic forward passes (the batch tiled S times, every
copy drawing its own noise) and returns the mean of the S losses, so the
attacker's gradient is the mean of the S gradients: a Monte Carlo estimate
of the gradient of the expected loss.  The deployed decision that judges
every iterate is a named option (:data:`DECISIONS`): ``'draw'``, the class
of the first of the S passes (what one query of the deployed model
answers), or ``'majority'``, the most frequent class over the S passes
(ties to the smaller class).  ``eot_samples = 1`` is the plain function
above, unchanged.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ..core.errors import EmpirError, check_choice, check_positive_int
from ..nets import ensemble as ens_mod
from ..nets import stochastic
from ..nets.metrics import LossFn

ENSEMBLE_OBJECTIVES = ("ce_mean_prob", "ce_sum", "dlr_mean_logits", "margin_mean_logits")
MEMBER_OBJECTIVES = ("ce_member", "margin_member")
DECISIONS = ("draw", "majority")

def cross_entropy(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Per-image softmax cross-entropy of ``logits`` (batch, classes) at labels ``y``."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)


def margin(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Carlini & Wagner's margin ``max_{j != y} z_j - z_y``: positive once the label has lost."""
    onehot = tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype)
    other = tf.reduce_max(logits - onehot * 1e9, -1)
    return other - tf.reduce_sum(onehot * logits, -1)


def dlr(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Croce & Hein's (2020) difference-of-logits ratio, Eq. 3 of their paper (needs >= 3 classes)."""
    top = tf.math.top_k(logits, 3).values
    return margin(logits, y) / (top[:, 0] - top[:, 2] + 1e-12)


def ce_mean_prob(z: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Cross-entropy of the members' mean probability, computed stably in log space."""
    k = tf.cast(tf.shape(z)[0], z.dtype)
    log_mean = tf.reduce_logsumexp(tf.nn.log_softmax(z), 0) - tf.math.log(k)
    return cross_entropy(log_mean, y)


def parse(name: str, n_members: int) -> tuple[str, int | None]:
    """Split ``'ce_member:2'`` into ``('ce_member', 2)``; refuse unknown names and bad indices."""
    if ":" in name:
        base, _, idx = name.partition(":")
        check_choice(base, MEMBER_OBJECTIVES, "member objective")
        if not idx.isdigit() or not 0 <= int(idx) < n_members:
            raise EmpirError(f"objective {name!r} names no member; this ensemble has members 0..{n_members - 1}.")
        return base, int(idx)
    check_choice(name, ENSEMBLE_OBJECTIVES + tuple(f"{m}:<i>" for m in MEMBER_OBJECTIVES), "objective")
    return name, None


def loss_fn(ens: ens_mod.Ensemble, name: str, eot_samples: int = 1, decision: str = "draw") -> LossFn:
    """``f(x, y) -> (loss, decision)``: the objective ``name`` per image, and the deployed class.

    The loss is what the attacker ascends; the decision is what the defence
    deploys (:func:`empir_lib.nets.ensemble.combine`'s ``pred``), read off the same
    member logits, so no extra forward pass is needed to judge an iterate.
    ``eot_samples > 1`` averages the loss (and so its gradient) over that many
    stochastic passes, judged by ``decision`` (module docstring, "EOT").
    """
    eot_samples, decision = check_eot(eot_samples, decision)
    f = _loss_fn(ens, name)
    return f if eot_samples == 1 else expectation(f, eot_samples, decision, ens.num_classes)


def check_eot(eot_samples: object, decision: str) -> tuple[int, str]:
    """``(eot_samples, decision)`` checked: an integer >= 1, and 'draw' or 'majority'."""
    return check_positive_int(eot_samples, "eot_samples"), check_choice(decision, DECISIONS, "EOT decision")


def expectation(f: LossFn, samples: int, decision: str, num_classes: int) -> LossFn:
    """EOT over ``f``: the mean loss of ``samples`` stochastic passes, and the named deployed decision."""

    def g(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        b = tf.shape(x)[0]
        loss, pred = f(tf.tile(x, [samples, 1, 1, 1]), tf.tile(y, [samples]))
        loss, pred = tf.reshape(loss, [samples, b]), tf.reshape(pred, [samples, b])
        pred = pred[0] if decision == "draw" else stochastic.majority_tf(pred, num_classes)
        return tf.reduce_mean(loss, 0), pred

    return g


def deployed(ens: ens_mod.Ensemble, x: np.ndarray, samples: int = 1, decision: str = "draw",
             batch_size: int = 500) -> np.ndarray:
    """The deployed class of each image under an EOT decision rule (numpy; one draw when ``samples == 1``)."""
    samples, decision = check_eot(samples, decision)
    if samples == 1 or decision == "draw":
        return ens_mod.predict(ens, x, batch_size)
    return stochastic.majority(np.stack([ens_mod.predict(ens, x, batch_size) for _ in range(samples)]))


def _loss_fn(ens: ens_mod.Ensemble, name: str) -> LossFn:
    """The plain (one-pass) loss function of :func:`loss_fn`."""
    base, idx = parse(name, len(ens.members))
    if base == "dlr_mean_logits" and ens.num_classes < 3:
        raise EmpirError("the DLR loss needs at least 3 classes.")
    order = ens_mod.priority(ens)

    def f(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        z = ens_mod.member_logits(ens, x)
        pred = ens_mod.combine(z, order, ens.rule)["pred"]
        if base == "ce_mean_prob":
            loss = ce_mean_prob(z, y)
        elif base == "ce_sum":
            loss = tf.add_n([cross_entropy(z[i], y) for i in range(len(ens.members))])
        elif base == "dlr_mean_logits":
            loss = dlr(tf.reduce_mean(z, 0), y)
        elif base == "margin_mean_logits":
            loss = margin(tf.reduce_mean(z, 0), y)
        elif base == "ce_member":
            loss = cross_entropy(z[idx], y)
        else:
            loss = margin(z[idx], y)
        return loss, pred

    return f


def decision_fn(ens: ens_mod.Ensemble, samples: int = 1, decision: str = "draw") -> Callable[[tf.Tensor], tf.Tensor]:
    """``f(x) -> class``: the deployed decision alone (for attacks whose own scores are something else).

    With ``samples > 1`` and ``decision='majority'``: the majority over that many stochastic passes.
    """
    samples, decision = check_eot(samples, decision)
    order = ens_mod.priority(ens)
    one = lambda x: ens_mod.combine(ens_mod.member_logits(ens, x), order, ens.rule)["pred"]  # noqa: E731
    if samples == 1 or decision == "draw":
        return one

    def many(x: tf.Tensor) -> tf.Tensor:
        pred = tf.reshape(one(tf.tile(x, [samples, 1, 1, 1])), [samples, tf.shape(x)[0]])
        return stochastic.majority_tf(pred, ens.num_classes)

    return many


def mean_logits_fn(ens: ens_mod.Ensemble) -> Callable[[tf.Tensor], tf.Tensor]:
    """``f(x) -> mean_k z_k``: the scores CW-L2's margin is taken on in the suite."""
    return lambda x: tf.reduce_mean(ens_mod.member_logits(ens, x), 0)


def mean_logits_and_decision_fn(ens: ens_mod.Ensemble) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """``f(x) -> (mean_k z_k, deployed class)`` from one pass through the members (CW-L2 in the suite)."""
    order = ens_mod.priority(ens)

    def f(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        z = ens_mod.member_logits(ens, x)
        return tf.reduce_mean(z, 0), ens_mod.combine(z, order, ens.rule)["pred"]

    return f
