"""Exercise checks, chapter 10: the other defences of Table 2 (paper section 5.3)."""
from __future__ import annotations

import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from ...nets import data, defence_losses, zoo
from .verdict import verdict

# --- 10.1: FGSM adversarial training's loss ----------------------------------------------------


def fgsm_at_problem(n: int = 16, eps: float = 0.3) -> tuple[keras.Model, np.ndarray, np.ndarray, float]:
    """The check's setting: the MNIST FP baseline, ``n`` sample images, their true labels, eps."""
    x, y = data.load_sample("mnist", n)
    return zoo.load(zoo.find("mnist")), x, y, eps


def reference_fgsm_at_loss(model: keras.Model, x: np.ndarray, y: np.ndarray, eps: float,
                           clean_weight: float = 0.5) -> np.ndarray:
    """The library's per-image FGSM-AT loss (:func:`empir_lib.nets.defence_losses.loss_fn`, 'fgsm-at')."""
    fn = defence_losses.loss_fn("fgsm-at", {"eps": eps, "clean_weight": clean_weight}, model)
    loss, _ = fn(tf.constant(x), tf.one_hot(np.asarray(y).astype(np.int32), model.output_shape[-1]))
    return loss.numpy()


def _ce(model: keras.Model, x: np.ndarray | tf.Tensor, y: np.ndarray) -> np.ndarray:
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y.astype(np.int32), logits=model(x)).numpy()


def check_fgsm_at_loss(student_fn: Callable, n: int = 16, eps: float = 0.3) -> bool:
    """Compare a student's FGSM adversarial-training loss with the library's, image by image.

    ``student_fn(model, x, y, eps)`` takes a Keras model that outputs logits,
    images x (NumPy, NHWC, in [0, 1]), true labels y (integers) and eps, and
    returns one loss per image: ``0.5 CE(x) + 0.5 CE(x_fgsm)`` with
    ``x_fgsm = clip(x + eps sign(grad_x CE(x)), 0, 1)`` (Goodfellow et al. 2015, section 6).
    """
    model, x, y, eps = fgsm_at_problem(n, eps)
    expected = reference_fgsm_at_loss(model, x, y, eps)
    try:
        got = np.asarray(student_fn(model, x.copy(), y.copy(), eps), dtype=np.float64)
    except Exception as e:  # the student's code failing is an answer to report, not a crash
        return verdict(False, f"your function raised {type(e).__name__}: {e}")
    if got.size == 1 and n > 1:
        return verdict(False, f"you returned one number; return one loss per image ({n} of them), "
                              "training averages them itself.")
    if got.shape != expected.shape:
        return verdict(False, f"for {n} images return {n} losses (shape {expected.shape}); you returned {got.shape}.")

    def close(a: np.ndarray) -> bool:
        return bool(np.allclose(got, a, rtol=1e-3, atol=1e-4))

    if close(expected):
        return verdict(True, f"correct: your loss matches the library's on {n} images (mean "
                             f"{expected.mean():.3f}, against {_ce(model, x, y).mean():.3f} for clean CE alone).")
    clean, g = _ce(model, x, y), np.sign(_gradient(model, x, y))
    adv_only = 2 * expected - clean  # CE(x_fgsm)
    if close(clean):
        return verdict(False, "that is the clean cross-entropy alone; add the term on the FGSM images.")
    if close(adv_only):
        return verdict(False, "that is the adversarial term alone (PGD-AT's choice, w = 0); FGSM-AT weighs "
                              "the clean and the adversarial cross-entropy 0.5 each.")
    if close(clean + adv_only):
        return verdict(False, "you add the two terms; weigh each by 0.5.")
    if close(0.5 * clean + 0.5 * _ce(model, np.clip(x - eps * g, 0, 1), y)):
        return verdict(False, "your FGSM step goes *down* the loss: x + eps * sign(grad).")
    if close(0.5 * clean + 0.5 * _ce(model, x + eps * g, y)):
        return verdict(False, "clip the FGSM images to [0, 1]: MNIST's pixels are mostly 0 or 1, so most of "
                              "the step leaves the image box otherwise.")
    return verdict(False, f"your losses differ from the library's by up to {np.abs(got - expected).max():.3g} "
                          f"(mean {got.mean():.3f} against {expected.mean():.3f}).")


def _gradient(model: keras.Model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y.astype(np.int32), logits=model(xt))
    return tape.gradient(loss, xt).numpy()


# --- 10.2: where the cross-entropy's gradient vanishes -----------------------------------------


def _zero_at(gap: float, classes: int) -> bool:
    z = tf.constant([[gap] + [0.0] * (classes - 1)], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=[0], logits=z)
    return not np.any(tape.gradient(loss, z).numpy())


def zero_gradient_gap(classes: int = 10) -> float:
    """The smallest logit gap g at which CE's gradient is exactly zero in float32.

    The logits are ``[g, 0, ..., 0]`` (``classes`` of them) and the label is
    class 0; found by bisection on TensorFlow's own float32 gradient (about
    -ln of the smallest normal float32, 87.3, where exp(-g) flushes to zero).
    """
    lo, hi = 0.0, 200.0
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if _zero_at(mid, classes) else (mid, hi)
    return hi


def _saturation_gap(classes: int) -> float:
    lo, hi = 0.0, 200.0
    for _ in range(50):
        mid = (lo + hi) / 2
        p = tf.nn.softmax(tf.constant([[mid] + [0.0] * (classes - 1)], tf.float32))[0, 0]
        lo, hi = (lo, mid) if float(p) == 1.0 else (mid, hi)
    return hi


def check_zero_gradient_gap(answer: object, classes: int = 10) -> bool:
    """Check the smallest logit gap at which the cross-entropy's input gradient vanishes in float32 (within 0.5)."""
    expected = zero_gradient_gap(classes)
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return verdict(False, f"give one number, the logit gap; got {answer!r}.")
    if not math.isfinite(got):
        return verdict(False, f"give a finite number; got {got}.")
    if abs(got - expected) <= 0.5:
        return verdict(True, f"correct: from a gap of about {expected:.1f} the other classes' probabilities "
                             "exp(-g) fall below float32's smallest normal number and are flushed to zero, so "
                             "softmax minus the one-hot label is exactly zero.")
    sat = _saturation_gap(classes)
    if abs(got - sat) <= 0.5:
        return verdict(False, f"at about {sat:.1f} the top probability rounds to 1.0, but the other classes' "
                              "probabilities are still tiny non-zero numbers, and so is the gradient.")
    if abs(got - (-math.log(np.finfo(np.float32).smallest_subnormal))) <= 1.0:
        return verdict(False, "that counts the subnormal numbers; TensorFlow flushes them to zero on the CPU.")
    return verdict(False, f"not quite: you gave {got:.2f}. Try gaps in tf.float32 and look at the gradient "
                          "of the cross-entropy with respect to the logits.")
