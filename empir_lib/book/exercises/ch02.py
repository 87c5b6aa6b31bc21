"""Exercise checks, chapter 2: the attacks (paper section 2)."""
from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ...attack import attacks, validate
from ...core import settings
from ...nets import data, zoo
from .verdict import verdict


def _close_pixels(got: np.ndarray, expected: np.ndarray, tol: float = 1e-5) -> float:
    """Fraction of pixels that differ by more than ``tol``."""
    return float(np.mean(np.abs(got - expected) > tol))


def fgsm_problem(n: int = 16, eps: float = 0.3) -> tuple[keras.Model, np.ndarray, np.ndarray, float]:
    """The check's setting for FGSM: the MNIST FP baseline, ``n`` sample images, true labels."""
    model = zoo.load(zoo.find("mnist"))
    x, y = data.load_sample("mnist", n)
    return model, x, y, eps


def reference_fgsm(model: keras.Model, x: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """Eq. 1 as the library computes it (:func:`empir_lib.attack.attacks.fgsm`) on the model's logits."""
    return attacks.fgsm(lambda v: model(v, training=False), tf.constant(x), tf.constant(y.astype(np.int32)),
                        eps).numpy()


def check_fgsm(student_fn: Callable, n: int = 16, eps: float = 0.3) -> bool:
    """Compare a student's FGSM step (Eq. 1) with :func:`empir_lib.attack.attacks.fgsm`.

    ``student_fn(model, x, y, eps)`` takes a Keras model that outputs logits,
    images x (NumPy, NHWC, in [0, 1]), true labels y and eps, and returns the
    adversarial images as a NumPy array.  A handful of pixels may differ
    where the gradient is almost exactly zero (its sign is then float noise),
    so up to 0.1% of pixels may disagree, as in tests/test_attacks.py.
    """
    model, x, y, eps = fgsm_problem(n, eps)
    expected = reference_fgsm(model, x, y, eps)
    try:
        got = np.asarray(student_fn(model, x.copy(), y.copy(), eps), dtype=np.float32)
    except Exception as e:  # the student's code failing is an answer to report, not a crash
        return verdict(False, f"your function raised {type(e).__name__}: {e}")
    if got.shape != x.shape:
        return verdict(False, f"for images of shape {x.shape} you returned shape {got.shape}.")
    if _close_pixels(got, expected) <= 1e-3:
        return verdict(True, f"correct: your FGSM step matches Eq. 1 on {n} images "
                              f"(eps = {eps}, max |x_adv - x| = {np.abs(got - x).max():.3g}).")
    if got.min() < -1e-6 or got.max() > 1 + 1e-6:
        return verdict(False, f"your images span [{got.min():.3f}, {got.max():.3f}]; clip them to [0, 1].")
    if _close_pixels(got, reference_fgsm(model, x, y, -eps)) <= 1e-3:
        return verdict(False, "you stepped *down* the loss; an attack climbs it: x + eps * sign(grad).")
    if np.abs(got - x).max() < 0.5 * eps:
        return verdict(False, f"your largest change is {np.abs(got - x).max():.3g}, far below eps = {eps}: "
                               "step by eps times the *sign* of the gradient, not the gradient itself.")
    return verdict(False, f"{_close_pixels(got, expected):.1%} of the pixels differ from Eq. 1.")


def linf_norms(x: ArrayLike, x_adv: ArrayLike) -> np.ndarray:
    """Per-image L-infinity norm of the perturbation, as the library's evaluation records it."""
    return validate.perturbation_norms(np.asarray(x, np.float32), np.asarray(x_adv, np.float32))[1]


def norm_problem(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images and perturbed copies with a different perturbation size per image."""
    x, _ = data.load_sample("mnist", n)
    rng = np.random.default_rng(seed)
    sizes = rng.uniform(0.05, 0.3, n).astype(np.float32)
    # A negative extreme on purpose: a max without abs() then gives the wrong answer.
    delta = rng.uniform(-1, 0.5, x.shape).astype(np.float32) * sizes[:, None, None, None]
    return x, x + delta


def check_linf_norm(student_fn: Callable) -> bool:
    """Check ``student_fn(x, x_adv)`` -> one L-infinity norm max|x_adv - x| per image."""
    x, xa = norm_problem()
    expected = linf_norms(x, xa)
    try:
        got = np.asarray(student_fn(x.copy(), xa.copy()), dtype=np.float64).reshape(-1)
    except Exception as e:
        return verdict(False, f"your function raised {type(e).__name__}: {e}")
    if got.size == 1 and len(x) > 1:
        return verdict(False, f"you returned one number for {len(x)} images; give one norm per image.")
    if got.size != len(x):
        return verdict(False, f"{len(x)} images but {got.size} norms; reduce over the pixels of each image.")
    if np.allclose(got, expected, atol=1e-6):
        return verdict(True, "correct: the L-inf norms are " + ", ".join(f"{v:.4f}" for v in expected) + ".")
    d = (xa - x).reshape(len(x), -1)
    if np.allclose(got, np.sqrt((d ** 2).sum(1)), atol=1e-5):
        return verdict(False, "those are L2 norms (square root of the sum of squares); "
                              "L-inf is the largest |change|.")
    if np.allclose(got, d.max(1), atol=1e-6):
        return verdict(False, "take the absolute value first: a pixel pushed down by 0.3 counts as much as "
                              "one pushed up.")
    return verdict(False, "not the per-image max |x_adv - x|.")


def gradient_counts(dataset: str = "mnist") -> dict:
    """Gradient evaluations per image each attack needs at most under Table 1's presets."""
    p = settings.ATTACK_PRESETS[dataset]
    return {"fgsm": 1, "bim": p["bim"]["nb_iter"], "pgd": p["pgd"]["nb_iter"],
            "cw": p["cw"]["binary_search_steps"] * p["cw"]["max_iterations"]}


def check_gradient_counts(answer: dict, dataset: str = "mnist") -> bool:
    """Check the number of input gradients per image each attack computes (at most) on ``dataset``."""
    expected = gradient_counts(dataset)
    if not isinstance(answer, dict) or set(answer) != set(expected):
        return verdict(False, f"give a dict with the keys {sorted(expected)}; got {answer!r}.")
    wrong = [k for k in expected if answer[k] != expected[k]]
    if wrong:
        return verdict(False, f"not right for {', '.join(wrong)}; read settings.ATTACK_PRESETS[{dataset!r}].")
    return verdict(True, "correct: " + ", ".join(f"{k.upper()} {v}" for k, v in expected.items())
                    + f" gradients per image on {dataset}.")
