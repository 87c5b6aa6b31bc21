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

LossFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _ce(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    return keras.losses.categorical_crossentropy(targets, logits, from_logits=True)


def _input_gradient(model: keras.Model, x: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    # Each image's loss depends on that image only, so the gradient of the sum is per image.
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(_ce(targets, model(x, training=True)))
    return tape.gradient(loss, x)


def fgsm_examples(model: keras.Model, x: tf.Tensor, targets: tf.Tensor, eps: float) -> tf.Tensor:
    """Goodfellow et al.'s x + eps sign(grad_x CE), clipped to [0, 1], with no gradient through it."""
    return tf.stop_gradient(tf.clip_by_value(x + eps * tf.sign(_input_gradient(model, x, targets)), 0.0, 1.0))


def pgd_examples(model: keras.Model, x: tf.Tensor, targets: tf.Tensor, eps: float, steps: int,
                 step_size: float) -> tf.Tensor:
    """Madry et al.'s PGD: uniform start in the L-inf ball, ``steps`` signed steps, each projected."""
    adv = tf.clip_by_value(x + tf.random.uniform(tf.shape(x), -eps, eps), 0.0, 1.0)
    for _ in range(steps):
        adv = adv + step_size * tf.sign(_input_gradient(model, adv, targets))
        adv = tf.clip_by_value(tf.clip_by_value(adv, x - eps, x + eps), 0.0, 1.0)
    return tf.stop_gradient(adv)


def loss_fn(defence: str, params: dict, model: keras.Model, teacher: keras.Model | None = None,
            stage: str = "student") -> LossFn:
    """``f(x, targets) -> (per-image loss, logits on the clean images)`` for :func:`train.train_member`.

    Call it inside the training step's ``GradientTape``: the crafting of
    adversarial examples and IGR's inner gradient run on their own tapes.
    ``stage`` is 'teacher' for distillation's first network (labels, logits / T).
    """
    params = check(defence, params)

    if defence == "none":
        def plain(x, targets):
            logits = model(x, training=True)
            return _ce(targets, logits), logits
        return plain

    if defence == "distillation":
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

    if defence == "igr":
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

    w = params["clean_weight"]

    def adversarial_loss(x, targets):
        if defence == "fgsm-at":
            adv = fgsm_examples(model, x, targets, params["eps"])
        else:
            adv = pgd_examples(model, x, targets, params["eps"], params["steps"], params["step_size"])
        # The clean logits also feed the progress bar's training accuracy (clean, as for every recipe).
        logits = model(x, training=True)
        loss = (1.0 - w) * _ce(targets, model(adv, training=True))
        if w > 0:
            loss = loss + w * _ce(targets, logits)
        return loss, logits
    return adversarial_loss
