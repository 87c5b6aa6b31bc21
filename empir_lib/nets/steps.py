"""The geometry every attack and every adversarial training loss shares: the projection and the step.

An attack moves an image along the steepest-ascent direction of its loss
(the sign of the gradient for L-inf, Goodfellow et al. 2015 and the paper's
Eq. 1-4; the gradient over its L2 norm for L2), then projects back onto the
eps ball around the natural image and into the pixel box.  One owner for
both: APGD (:mod:`empir_lib.attack.apgd`), FGSM and the masking check
(:mod:`empir_lib.attack.attacks`, :mod:`empir_lib.attack.masking`) and the
FGSM/PGD training examples (:mod:`empir_lib.nets.defence_losses`).
"""
from __future__ import annotations

import tensorflow as tf

from .metrics import CLIP


def per_image(v: tf.Tensor) -> tf.Tensor:
    """A per-image vector shaped to broadcast over (batch, height, width, channels)."""
    return tf.reshape(v, [-1, 1, 1, 1])


def l2_norms(d: tf.Tensor) -> tf.Tensor:
    """Per-image L2 norms of a batch of images."""
    return tf.sqrt(tf.reduce_sum(tf.square(d), [1, 2, 3]))


def project(x_nat: tf.Tensor, x: tf.Tensor, eps: float | tf.Tensor, norm: str,
            clip: tuple[float, float] = CLIP) -> tf.Tensor:
    """Project ``x`` onto the eps ball around ``x_nat`` (L-inf or L2), then into the pixel box.

    ``eps`` is one budget or one per image (a vector: the minimal-norm search's bisection).
    Clipping to the box after the ball keeps the ball: each pixel only moves towards ``x_nat``.
    """
    eps = tf.cast(eps, x.dtype)
    if norm == "linf":
        e = per_image(eps) if eps.shape.rank == 1 else eps
        x = tf.clip_by_value(x, x_nat - e, x_nat + e)
    else:
        d = x - x_nat
        x = x_nat + d * per_image(tf.minimum(1.0, eps / (l2_norms(d) + 1e-12)))
    return tf.clip_by_value(x, *clip)


def direction(g: tf.Tensor, norm: str) -> tf.Tensor:
    """The steepest-ascent direction of unit norm: sign (L-inf) or g / ||g|| (L2)."""
    return tf.sign(g) if norm == "linf" else g / per_image(l2_norms(g) + 1e-12)


def signed_step(x_nat: tf.Tensor, x: tf.Tensor, g: tf.Tensor, step: float, eps: float,
                clip: tuple[float, float] = CLIP) -> tf.Tensor:
    """One L-inf ascent step of size ``step`` from ``x`` along ``sign(g)``, projected (ball around ``x_nat``, box)."""
    return project(x_nat, x + step * direction(g, "linf"), eps, "linf", clip)
