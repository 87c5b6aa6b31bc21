"""Signs of gradient masking measured live on a member (chapter 10): saturated softmax, zero gradients.

Carlini & Wagner (2016) showed that defensive distillation's softmax saturates
in float32, so the cross-entropy's input gradient is exactly zero while the
margin's is not; one FGSM step on each loss tells the two apart.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ..core import settings
from ..core.errors import EmpirError
from ..nets import steps, zoo
from ..nets.defence_losses import input_gradient
from . import attacks, objectives


def _load_member(dataset: str, member: str, zoo_dir: str | os.PathLike | None) -> tuple:
    have = zoo.members(dataset, zoo_dir)
    if member not in have:
        tag = settings.defence_tag(member)
        cmd = f"empir zoo build --dataset {dataset}" + (" --defended" if tag else "")
        raise EmpirError(f"{member} is not in the zoo yet; '{cmd}' trains it.")
    return zoo.load(member, zoo_dir), have[member]


def gradient_masking(dataset: str, members: Sequence[str], x: ArrayLike, y: ArrayLike, eps: float | None = None,
                     zoo_dir: str | os.PathLike | None = None) -> list[dict]:
    """Signs of gradient masking per member, measured on ``x`` (float32, as TensorFlow computes them).

    For each member: ``accuracy`` (clean, %); ``saturated``: % of images
    whose top softmax probability is exactly 1 in float32; ``gap``: the median
    gap between the top two logits; ``zero_ce``: % of images whose input
    gradient of the cross-entropy is exactly zero in every pixel (the softmax
    minus the one-hot label underflows, which can happen only on an image the
    member classifies correctly: Carlini & Wagner 2016 on defensive
    distillation); ``zero_margin``: the same for Carlini & Wagner's margin
    ``max_{j != y} z_j - z_y``; ``fgsm_ce`` and ``fgsm_margin``: accuracy (%)
    after one FGSM step of ``eps`` (default: Table 1's) along the sign of each
    loss's gradient.  A member not in the zoo raises an EmpirError naming the
    command that trains it.
    """
    eps = attacks.preset(dataset, "fgsm")["eps"] if eps is None else float(eps)
    x = tf.constant(np.asarray(x, np.float32))
    y_np = np.asarray(y).reshape(-1).astype(np.int32)
    if len(y_np) != x.shape[0] or len(y_np) == 0:
        raise EmpirError(f"x holds {x.shape[0]} images and y {len(y_np)} labels; give one label per image.")
    y_t = tf.constant(y_np)
    out = []
    for member in members:
        model, entry = _load_member(dataset, member, zoo_dir)
        logits = model(x, training=False)
        top2 = tf.math.top_k(logits, 2).values.numpy()
        row = {"member": member, "defence": entry.get("defence", "none"), "n": len(y_np),
               "accuracy": 100 * float(np.mean(np.argmax(logits, -1) == y_np)),
               "saturated": 100 * float(np.mean(tf.reduce_max(tf.nn.softmax(logits), -1).numpy() == 1.0)),
               "gap": float(np.median(top2[:, 0] - top2[:, 1]))}
        for name, loss in (("ce", objectives.cross_entropy), ("margin", objectives.margin)):
            g = input_gradient(model, x, lambda logits, loss=loss: loss(logits, y_t), training=False)
            row[f"zero_{name}"] = 100 * float(np.mean(~np.any(g.numpy().reshape(len(y_np), -1) != 0, axis=1)))
            adv = steps.signed_step(x, x, g, eps, eps)
            row[f"fgsm_{name}"] = 100 * float(np.mean(np.argmax(model(adv, training=False), -1) == y_np))
        row["eps"] = eps
        out.append(row)
    return out
