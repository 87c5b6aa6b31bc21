"""What a worst-case attacker differentiates, and what it is judged on.

An EMPIR ensemble *deploys* a decision (the 2-of-3 vote, or the argmax of the
mean probability for an averaging ensemble, paper section 3.2) that has no
useful gradient.  An attacker therefore climbs a differentiable **surrogate**
loss of the members' logits, but counts an image as broken only when the
*deployed decision* is wrong (Tramer et al. 2020, section 3; Carlini et al.
2019, "On evaluating adversarial robustness", section 4).  Each function built
here returns both from one forward pass through the members, so judging every
iterate on the vote costs nothing extra.

The surrogates (``z_k`` are member k's logits, ``K`` members, ``y`` the label):

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
"""
from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from . import ensemble as ens_mod
from .errors import EmpirError, check_choice

ENSEMBLE_SURROGATES = ("ce_mean_prob", "ce_sum", "dlr_mean_logits", "margin_mean_logits")
MEMBER_SURROGATES = ("ce_member", "margin_member")

LossFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


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
        check_choice(base, MEMBER_SURROGATES, "member surrogate")
        if not idx.isdigit() or not 0 <= int(idx) < n_members:
            raise EmpirError(f"surrogate {name!r} names no member; this ensemble has members 0..{n_members - 1}.")
        return base, int(idx)
    check_choice(name, ENSEMBLE_SURROGATES + tuple(f"{m}:<i>" for m in MEMBER_SURROGATES), "surrogate")
    return name, None


def loss_fn(ens: ens_mod.Ensemble, name: str) -> LossFn:
    """``f(x, y) -> (loss, decision)``: the surrogate ``name`` per image, and the deployed class.

    The loss is what the attacker ascends; the decision is what the defence
    deploys (:func:`empir_lib.ensemble.combine`'s ``pred``), read off the same
    member logits, so no extra forward pass is needed to judge an iterate.
    """
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


def decision_fn(ens: ens_mod.Ensemble) -> Callable[[tf.Tensor], tf.Tensor]:
    """``f(x) -> class``: the deployed decision alone (for attacks whose own scores are something else)."""
    order = ens_mod.priority(ens)
    return lambda x: ens_mod.combine(ens_mod.member_logits(ens, x), order, ens.rule)["pred"]


def mean_logits_fn(ens: ens_mod.Ensemble) -> Callable[[tf.Tensor], tf.Tensor]:
    """``f(x) -> mean_k z_k``: the scores CW-L2's margin is taken on in the suite."""
    return lambda x: tf.reduce_mean(ens_mod.member_logits(ens, x), 0)
