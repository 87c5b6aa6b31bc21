"""An attack objective's loss and gradient along a straight path from the clean images.

FGSM steps once along ``sign(gradient)``; how the loss and the gradient's size
change along that step says whether the objective gives an attacker anything
to follow.  The paper protocol's objective (probabilities fed to
cross-entropy as if they were logits, appendix section 4) is nearly flat
there; ``-log`` of the mean probability is not (chapters 5 and 8).

A point of a path is ``clip(x + t * direction, 0, 1)``; every statistic is a
median over the images, so a few saturated images do not dominate it.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

from ...attack import attacks
from ...nets import ensemble


def flat_loss_and_gradient(ens: ensemble.Ensemble, objective: str, x: ArrayLike,
                           labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """:func:`empir_lib.attack.attacks.loss_and_gradient` with the gradient flattened per image (N, pixels)."""
    loss, grad = attacks.loss_and_gradient(ens, objective, np.asarray(x, np.float32), labels)
    return loss, grad.reshape(len(loss), -1)


def gradient_sign(ens: ensemble.Ensemble, objective: str, x: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """The objective's FGSM direction at the clean images: the sign of its gradient, in the images' shape."""
    _, grad = flat_loss_and_gradient(ens, objective, x, labels)
    return np.sign(grad).reshape(np.shape(x)).astype(np.float32)


def point(x: ArrayLike, t: float, direction: ArrayLike) -> np.ndarray:
    """``clip(x + t * direction, 0, 1)``: the path's point at step size ``t``."""
    return np.clip(np.asarray(x) + float(t) * np.asarray(direction), 0.0, 1.0).astype(np.float32)


def along_path(ens: ensemble.Ensemble, objective: str, x: ArrayLike, labels: ArrayLike, ts: Iterable[float],
               direction: ArrayLike, y: ArrayLike | None = None) -> dict:
    """The median loss and median L1 gradient norm at every ``t`` (and the ensemble's accuracy if ``y`` is given).

    Returns ``{"loss": [...], "grad": [...]}`` (plus ``"acc"``), one value per ``t``.
    """
    curve = {"loss": [], "grad": []} | ({} if y is None else {"acc": []})
    for t in ts:
        xt = point(x, t, direction)
        loss, grad = flat_loss_and_gradient(ens, objective, xt, labels)
        curve["loss"].append(float(np.median(loss)))
        curve["grad"].append(float(np.median(np.abs(grad).sum(1))))
        if y is not None:
            curve["acc"].append(float(np.mean(ensemble.predict(ens, xt) == np.asarray(y))))
    return curve


def own_paths(ens: ensemble.Ensemble, objectives: dict, x: ArrayLike, y: ArrayLike, ts: Iterable[float]) -> dict:
    """Each objective along its own FGSM direction (chapter 8).

    ``objectives`` maps a label to ``(protocol, objective)``; the protocol
    decides the labels attacked (the ensemble's predictions or the true ones).
    """
    paths = {}
    for label, (protocol, objective) in objectives.items():
        labels = attacks.attack_labels(ens, x, y, protocol)
        direction = gradient_sign(ens, objective, x, labels)
        paths[label] = along_path(ens, objective, x, labels, ts, direction, y)
    return paths


def compare_on_path(ens: ensemble.Ensemble, objectives: dict, x: ArrayLike, labels: ArrayLike,
                    ts: Iterable[float], direction: ArrayLike) -> tuple[dict, list[dict]]:
    """Two objectives along one shared path (chapter 5).

    Returns the curves of :func:`along_path` per objective label, and one row
    per ``t``: the median mean probability of the label (``p``), the median
    ratio of the first objective's gradient size to the second's (``ratio``),
    and the fraction of pixels where their gradient signs agree (``sign``).
    """
    if len(objectives) != 2:
        raise ValueError(f"compare_on_path compares two objectives, got {len(objectives)}")
    labels = np.asarray(labels)
    curves = {name: {"loss": [], "grad": []} for name in objectives}
    rows = []
    for t in ts:
        xt = point(x, t, direction)
        grads = {}
        for name, objective in objectives.items():
            loss, grads[name] = flat_loss_and_gradient(ens, objective, xt, labels)
            curves[name]["loss"].append(float(np.median(loss)))
            curves[name]["grad"].append(float(np.median(np.abs(grads[name]).sum(1))))
        g1, g2 = grads.values()
        p_label = ensemble.outputs(ens, xt)["mean_prob"].numpy()[np.arange(len(labels)), labels]
        rows.append({"t": float(t), "p": float(np.median(p_label)),
                     "ratio": float(np.median(np.abs(g1).sum(1) / np.abs(g2).sum(1))),
                     "sign": float(np.mean(np.sign(g1) == np.sign(g2)))})
    return curves, rows
