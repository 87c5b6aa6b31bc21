"""The per-image training losses of Table 2's other defences (paper section 5.3).

Names, settings and their checks are in :mod:`empir_lib.core.defences`, which
says which paper each loss follows and where the original code differs.
"""
from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from ..core.defences import check
from ..core.errors import EmpirError
from . import steps
from .metrics import CLIP, LossFn


def _ce(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return keras.losses.categorical_crossentropy(targets, logits, from_logits=True)


def input_gradient(model: keras.Model, x: tf.Tensor, loss: Callable[[tf.Tensor], tf.Tensor],
                   training: bool = True) -> tf.Tensor:
    """The gradient of ``sum(loss(model(x)))`` with respect to ``x``: each image's own, as each image's loss
    depends on that image only.  ``loss`` maps logits to per-image losses."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(loss(model(x, training=training)))
    return tape.gradient(value, x)


def _ce_gradient(model: keras.Model, x: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    return input_gradient(model, x, lambda logits: _ce(targets, logits))


def fgsm_examples(model: keras.Model, x: tf.Tensor, targets: tf.Tensor, eps: float) -> tf.Tensor:
    """Goodfellow et al.'s x + eps sign(grad_x CE), clipped to [0, 1], with no gradient through it."""
    return tf.stop_gradient(steps.signed_step(x, x, _ce_gradient(model, x, targets), eps, eps))


def pgd_examples(model: keras.Model, x: tf.Tensor, targets: tf.Tensor, eps: float, n_steps: int,
                 step_size: float) -> tf.Tensor:
    """Madry et al.'s PGD: uniform start in the L-inf ball, ``steps`` signed steps, each projected."""
    adv = tf.clip_by_value(x + tf.random.uniform(tf.shape(x), -eps, eps), *CLIP)
    for _ in range(n_steps):
        adv = steps.signed_step(x, adv, _ce_gradient(model, adv, targets), step_size, eps)
    return tf.stop_gradient(adv)


LOSSES: dict[str, Callable[..., LossFn]] = {}


def loss_for(defence: str) -> Callable:
    """Register a builder ``build(params, model, teacher, stage) -> LossFn`` as ``defence``'s loss."""
    def register(build: Callable[..., LossFn]) -> Callable[..., LossFn]:
        LOSSES[defence] = build
        return build
    return register


def loss_fn(defence: str, params: dict, model: keras.Model, teacher: keras.Model | None = None,
            stage: str = "student") -> LossFn:
    """``f(x, targets) -> (per-image loss, logits on the clean images)`` for :func:`train.train_member`.

    Call it inside the training step's ``GradientTape``: the crafting of
    adversarial examples and IGR's inner gradient run on their own tapes.
    ``stage`` is 'teacher' for distillation's first network (labels, logits / T).
    """
    params = check(defence, params)
    if defence not in LOSSES:
        raise EmpirError(f"defence {defence!r} is registered but has no loss in empir_lib.nets.defence_losses.")
    return LOSSES[defence](params, model, teacher, stage)


@loss_for("none")
def _plain(params: dict, model: keras.Model, teacher: keras.Model | None, stage: str) -> LossFn:
    def plain(x, targets):
        logits = model(x, training=True)
        return _ce(targets, logits), logits
    return plain


@loss_for("distillation")
def _distillation(params: dict, model: keras.Model, teacher: keras.Model | None, stage: str) -> LossFn:
    t = params["temperature"]
    if stage == "teacher":
        def teacher_loss(x, targets):
            logits = model(x, training=True)
            return _ce(targets, logits / t), logits
        return teacher_loss
    if teacher is None:
        raise EmpirError("distillation's student needs its teacher network.")

    def student_loss(x, targets):
        soft = tf.nn.softmax(tf.stop_gradient(teacher(x, training=False)) / t)
        logits = model(x, training=True)
        return _ce(soft, logits / t), logits
    return student_loss


@loss_for("igr")
def _igr(params: dict, model: keras.Model, teacher: keras.Model | None, stage: str) -> LossFn:
    lam = params["lam"]

    def igr_loss(x, targets):
        with tf.GradientTape() as inner:
            inner.watch(x)
            logits = model(x, training=True)
            ce = _ce(targets, logits)
            total = tf.reduce_sum(ce)  # on the inner tape: the sum's gradient is each image's own
        # Taken inside the caller's tape, so the gradient is itself differentiated (double backpropagation).
        grad = inner.gradient(total, x)
        penalty = tf.reduce_sum(tf.square(grad), axis=tf.range(1, tf.rank(grad)))
        return ce + lam * penalty, logits
    return igr_loss


def _adversarial(craft: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], params: dict, model: keras.Model) -> LossFn:
    """``(1 - w) CE(x_adv) + w CE(x)``, the examples crafted against the true or the predicted labels."""
    w = params["clean_weight"]
    predicted = params.get("labels") == "predicted"

    def adversarial_loss(x, targets):
        # The original code crafts against the model's own predictions (its `y=None`), which avoids label
        # leaking (Kurakin et al. 2017); the loss itself is on the true targets either way.
        aim = (tf.one_hot(tf.argmax(model(x, training=False), axis=-1), tf.shape(targets)[-1])
               if predicted else targets)
        adv = craft(x, tf.stop_gradient(tf.cast(aim, targets.dtype)))
        # The clean logits also feed the progress bar's training accuracy (clean, as for every recipe).
        logits = model(x, training=True)
        loss = (1.0 - w) * _ce(targets, model(adv, training=True))
        if w > 0:
            loss = loss + w * _ce(targets, logits)
        return loss, logits
    return adversarial_loss


@loss_for("fgsm-at")
def _fgsm_at(params: dict, model: keras.Model, teacher: keras.Model | None, stage: str) -> LossFn:
    return _adversarial(lambda x, t: fgsm_examples(model, x, t, params["eps"]), params, model)


@loss_for("pgd-at")
def _pgd_at(params: dict, model: keras.Model, teacher: keras.Model | None, stage: str) -> LossFn:
    return _adversarial(lambda x, t: pgd_examples(model, x, t, params["eps"], params["steps"], params["step_size"]),
                        params, model)
