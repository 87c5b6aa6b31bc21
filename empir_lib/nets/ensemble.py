"""EMPIR(M, N): M full-precision and N low-precision members, combined (paper section 3.2).

The paper names two combination rules (section 3.2):

* **averaging**: the predicted class is the argmax of the members' mean
  probability;
* **max voting**: every member votes for its argmax class and the class with
  the most votes wins.

The original code implements only voting for three members and breaks a
three-way disagreement in favour of the full-precision member (the original
code, appendix section 4, book/appendix_original_code.ipynb).  We generalise that rule to any number of members without
changing it for three: *among the classes with the most votes, the winner is
the one chosen by the first full-precision member that voted for one of
them* (members are ranked FP first, in the order given, then LP).  With three
members this is exactly the original: a majority of two wins, and when all
three disagree the FP member decides.  An ensemble with no FP member ranks
its members in the order given.

For attacks, section 4.2 defines the ensemble's gradient as the gradient of
the mean probability of *all* members (averaging) or of *the members that
voted for the winning class* (voting).  :func:`combine` returns both, plus
each member's logits, all vectorised over the batch: no Python loop per image
as in the original ``tf.while_loop``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ..core import distribute, memo, settings
from ..core.errors import EmpirError, check_choice, check_positive_int
from . import zoo
from .models import check_images

RULES = ("vote", "average")


class Ensemble(NamedTuple):
    """Members (Keras models that output logits), their names, which are FP, and the rule."""

    members: tuple
    names: tuple
    fp: tuple
    rule: str

    @property
    def input_shape(self) -> tuple:
        return tuple(self.members[0].input_shape[1:])

    @property
    def num_classes(self) -> int:
        return int(self.members[0].output_shape[-1])

    def describe(self) -> str:
        lp = sum(not f for f in self.fp)
        return f"EMPIR({len(self.fp) - lp} FP, {lp} LP; {self.rule}): " + " + ".join(self.names)


def is_full_precision(model: keras.Model) -> bool:
    """True when no layer of ``model`` quantises its weights or inputs."""
    fp = settings.FULL_PRECISION
    return all(settings.is_full_precision(getattr(layer, "wbits", fp), getattr(layer, "abits", fp))
               for layer in model.layers)


def make(members: Sequence[keras.Model], rule: str = "vote", names: Sequence[str] | None = None) -> Ensemble:
    """Build an ensemble from Keras models that output logits.

    Refuses an empty list, members that disagree on input shape or number of
    classes, and an unknown rule, naming the offender.
    """
    members = tuple(members or ())
    if not members:
        raise EmpirError("an ensemble needs at least one member; pass one or more models (M + N >= 1).")
    check_choice(rule, RULES, "combination rule")
    for i, m in enumerate(members):
        if not isinstance(m, keras.Model):
            raise EmpirError(f"member {i} ({m!r}) is a {type(m).__name__}, not a Keras model; "
                             "load zoo members with ensemble.from_zoo(ids).")
    names = tuple(names) if names is not None else tuple(m.name for m in members)
    if len(names) != len(members):
        raise EmpirError(f"{len(names)} names for {len(members)} members.")
    shape0, classes0 = tuple(members[0].input_shape[1:]), members[0].output_shape[-1]
    for m, n in zip(members[1:], names[1:]):
        if tuple(m.input_shape[1:]) != shape0:
            raise EmpirError(f"member {n!r} takes inputs of shape {tuple(m.input_shape[1:])} but "
                             f"{names[0]!r} takes {shape0}; all members must read the same images.")
        if m.output_shape[-1] != classes0:
            raise EmpirError(f"member {n!r} has {m.output_shape[-1]} classes but {names[0]!r} has {classes0}.")
    return Ensemble(members, names, tuple(is_full_precision(m) for m in members), rule)


def from_zoo(ids: Sequence[str], rule: str = "vote", zoo_dir: str | os.PathLike | None = None) -> Ensemble:
    """An ensemble of zoo members by id, e.g. ``from_zoo(['mnist-a4w2-s1', 'mnist-fp-s1'])``."""
    ids = list(ids or ())
    if not ids:
        raise EmpirError("an ensemble needs at least one member; pass one or more zoo ids.")
    return make([zoo.load(i, zoo_dir) for i in ids], rule, names=ids)


def empir(dataset: str, rule: str = "vote") -> Ensemble:
    """The paper's EMPIR configuration for ``dataset`` (two LP members and one FP member)."""
    check_choice(dataset, tuple(settings.EMPIR_MEMBERS), "dataset")
    return from_zoo(settings.EMPIR_MEMBERS[dataset], rule)


def baseline(dataset: str) -> Ensemble:
    """The FP baseline of the paper's Table 2 as a one-member ensemble."""
    check_choice(dataset, tuple(settings.EMPIR_MEMBERS), "dataset")
    return from_zoo([settings.get(dataset).empir_fp], "vote")


def priority(ens: Ensemble) -> np.ndarray:
    """Member indices in tie-break order: FP members first, then LP, each in the given order."""
    idx = np.arange(len(ens.fp))
    return np.concatenate([idx[np.array(ens.fp, bool)], idx[~np.array(ens.fp, bool)]]).astype(np.int32)


def member_logits(ens: Ensemble, x: tf.Tensor) -> tf.Tensor:
    """Every member's logits, stacked: shape (members, batch, classes)."""
    return tf.stack([m(x, training=False) for m in ens.members])


def vote(logits: tf.Tensor, order: ArrayLike) -> tuple[tf.Tensor, tf.Tensor]:
    """Max voting with the FP-first tie-break.  Returns (winner, voter mask (members, batch)).

    ``order`` is :func:`priority`.  Vectorised: one-hot votes are counted,
    the tied-for-most classes are marked, and the first member in ``order``
    whose vote lies among them names the winner.
    """
    preds = tf.argmax(logits, -1, output_type=tf.int32)                       # (K, B)
    counts = tf.reduce_sum(tf.one_hot(preds, tf.shape(logits)[-1]), 0)       # (B, C)
    tied = counts >= tf.reduce_max(counts, -1, keepdims=True)                 # (B, C)
    ranked = tf.gather(preds, order)                                          # (K, B), priority order
    in_tied = tf.gather(tied, tf.transpose(ranked), batch_dims=1)             # (B, K)
    first = tf.argmax(tf.cast(in_tied, tf.int32), -1, output_type=tf.int32)   # first True per image
    winner = tf.gather(tf.transpose(ranked), first, batch_dims=1)             # (B,)
    return winner, tf.equal(preds, winner[None])


def combine(logits: tf.Tensor, order: ArrayLike, rule: str) -> dict:
    """The ensemble's outputs from stacked member logits (section 3.2 and 4.2).

    Returns a dict of tensors:
      ``pred``            the ensemble's class (vote or argmax of the mean);
      ``mean_prob``       the plain mean of the members' softmax probabilities;
      ``voter_mean_prob`` the mean over the members that voted for the voted
                          class (the paper's gradient rule for voting; the
                          voter selection is piecewise constant, so it is
                          held fixed under differentiation, as in the original);
      ``attack_prob``     the paper's gradient rule for ``rule``;
      ``logits``          the stacked member logits (members, batch, classes).
    """
    probs = tf.nn.softmax(logits, -1)
    mean_prob = tf.reduce_mean(probs, 0)
    winner, voters = vote(logits, order)
    w = tf.stop_gradient(tf.cast(voters, probs.dtype))[..., None]
    voter_mean = tf.reduce_sum(probs * w, 0) / tf.reduce_sum(w, 0)
    if rule == "vote":
        pred, attack_prob = winner, voter_mean
    else:
        pred, attack_prob = tf.argmax(mean_prob, -1, output_type=tf.int32), mean_prob
    return {"pred": pred, "mean_prob": mean_prob, "voter_mean_prob": voter_mean, "attack_prob": attack_prob,
            "logits": logits}


def outputs(ens: Ensemble, x: tf.Tensor) -> dict:
    """:func:`combine` for a batch of images (a tensor; no checks: for use inside attacks)."""
    return combine(member_logits(ens, x), priority(ens), ens.rule)


def predict(ens: Ensemble, x: ArrayLike, batch_size: int = 500) -> np.ndarray:
    """The ensemble's class for every image, in batches, after checking the images."""
    x = check_images(x, ens.input_shape)
    batch_size = check_positive_int(batch_size, "batch_size")
    fn = _predict_fn(ens)
    out = [fn(tf.constant(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def predict_all(ens: Ensemble, x: ArrayLike, batch_size: int = 500) -> dict:
    """Numpy versions of every :func:`combine` output for checked images (for chapters and tests)."""
    x = check_images(x, ens.input_shape)
    batch_size = check_positive_int(batch_size, "batch_size")
    parts = [outputs(ens, tf.constant(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    axis = {"logits": 1}
    return {k: np.concatenate([p[k].numpy() for p in parts], axis.get(k, 0)) for k in parts[0]}


def _predict_fn(ens: Ensemble) -> Callable:
    # One traced function per ensemble (keyed by member identity), reused across
    # calls; the entry keeps the ensemble alive so that an id is never reused.
    # Each batch is split over the tf.distribute replicas (one device here).
    key = (tuple(id(m) for m in ens.members), ens.rule)
    return memo.get("ensemble.predict", key, lambda: distribute.sharded(
        distribute.strategy(), lambda x: outputs(ens, x)["pred"], 1), 32, keep=ens)
