"""Clean accuracy of one model: logits in batches, and the fraction of true labels predicted.

Accuracy is the fraction of images whose predicted class equals the *true*
label, as in the original ``model_eval`` (the original code, appendix
section 5, book/appendix_original_code.ipynb).  Ensembles and attacks build
on this in :mod:`empir_lib.nets.ensemble` and :mod:`empir_lib.studies.evaluate`.
"""
from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ..core.errors import EmpirError, check_positive_int
from .models import check_images

# The pixel box every image lives in: each attack projects onto it, each training loss's examples too.
CLIP = (0.0, 1.0)
# What every attack and every defence's training loss differentiates: (x, y) -> (per-image loss, logits).
LossFn = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def predict_logits(model: keras.Model, x: ArrayLike, batch_size: int = 500) -> np.ndarray:
    """Logits for ``x`` in batches, after checking the images fit the model."""
    x = check_images(x, model.input_shape[1:])
    batch_size = check_positive_int(batch_size, "batch_size")
    out = [np.asarray(model(x[i:i + batch_size], training=False)) for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def accuracy(model: keras.Model, x: ArrayLike, y: ArrayLike, batch_size: int = 500) -> float:
    """Clean top-1 accuracy of ``model`` on ``(x, y)``."""
    y = np.asarray(y).reshape(-1)
    if len(y) != len(x):
        raise EmpirError(f"{len(x)} images but {len(y)} labels.")
    if len(y) == 0:
        raise EmpirError("accuracy of an empty set is undefined; pass at least one image.")
    return float(np.mean(predict_logits(model, x, batch_size).argmax(-1) == y))


def crossover(eps: list[float], member: list[float], fp: list[float]) -> dict:
    """Where a member beats the FP member, and where it stops: ``{start, stop, eps, status}``.

    Accuracy at eps 0 is the clean one and is not compared.  ``start`` is the
    first eps > 0 at which the member's accuracy is higher than the FP
    member's; ``stop`` (also ``eps``) the first eps after ``start`` at which
    it is no longer higher: where it stops beating FP.  ``status``:
    ``'never'`` (never higher), ``'always'`` (higher at every eps > 0),
    ``'overtakes'`` (higher from ``start`` to the largest eps),
    ``'crosses'`` (higher from ``start``, no longer from ``stop``).  Only the
    first stretch of eps where it is higher counts.
    """
    pts = [(e, a > b) for e, a, b in zip(eps, member, fp) if e > 0]
    start = next((e for e, beats in pts if beats), None)
    if start is None:
        return {"start": None, "stop": None, "eps": None, "status": "never"}
    stop = next((e for e, beats in pts if e > start and not beats), None)
    status = "crosses" if stop is not None else ("always" if start == pts[0][0] else "overtakes")
    return {"start": start, "stop": stop, "eps": stop, "status": status}
