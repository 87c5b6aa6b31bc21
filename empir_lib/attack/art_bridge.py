"""The Adversarial Robustness Toolbox (ART 1.20) on an EMPIR ensemble: Square and APGD, the references.

ART runs under TF 2.21 / Keras 3 when the model is a ``tf.Module`` whose
``__call__(x, training=False)`` returns scores, given to
``TensorFlowV2Classifier`` with a loss object and clip values.  Two score
functions are offered:

* ``"log_mean_prob"``: the log of the members' mean probability.  ART's
  APGD-CE then climbs ``-log mean_k p_k[y]``, the same objective as our
  ``ce_mean_prob``, which makes ART's APGD the reference our own fast
  :mod:`empir_lib.attack.apgd` is tested against;
* ``"decision"``: the mean probability plus one for the deployed class.  Its
  argmax *is* the vote, so an attack that ART judges successful has flipped
  the vote, while the mean probability still gives a gradient-free attack
  such as Square (Andriushchenko et al. 2020) a continuous margin to lower.

ART's own success tests therefore look at the deployed decision, and every
result is checked again by the caller with :func:`empir_lib.nets.ensemble.predict`.
"""
from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

# ART announces at import that PyTorch (for certification tools we do not use) is absent.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="PyTorch not found")
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
    from art.estimators.classification import TensorFlowV2Classifier

from ..core.errors import check_choice
from ..nets import ensemble as ens_mod

SCORES = ("log_mean_prob", "decision")


class _Scores(tf.Module):
    def __init__(self, ens: ens_mod.Ensemble, scores: str):
        super().__init__()
        self.ens, self.scores = ens, scores
        self.order = ens_mod.priority(ens)

    def __call__(self, x, training=False):
        z = ens_mod.member_logits(self.ens, tf.convert_to_tensor(x, tf.float32))
        out = ens_mod.combine(z, self.order, self.ens.rule)
        if self.scores == "log_mean_prob":
            k = tf.cast(tf.shape(z)[0], z.dtype)
            return tf.reduce_logsumexp(tf.nn.log_softmax(z), 0) - tf.math.log(k)
        return out["mean_prob"] + tf.one_hot(out["pred"], self.ens.num_classes)


def classifier(ens: ens_mod.Ensemble, scores: str = "decision") -> TensorFlowV2Classifier:
    """An ART classifier over the ensemble (see the module docstring for ``scores``)."""
    check_choice(scores, SCORES, "ART score function")
    return TensorFlowV2Classifier(
        model=_Scores(ens, scores), nb_classes=ens.num_classes, input_shape=ens.input_shape,
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=scores == "log_mean_prob"),
        clip_values=(0.0, 1.0))


def square(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, eps: float, max_iter: int = 1000,
           restarts: int = 1, seed: int = 0, batch_size: int = 500) -> np.ndarray:
    """ART's Square attack (L-inf) judged on the vote; returns the adversarial images.

    The yardstick for our own :func:`empir_lib.attack.square.square_linf`,
    which the suite runs (that module says why).
    """
    np.random.seed(seed)  # ART's Square draws its squares from numpy's global generator
    attack = SquareAttack(classifier(ens, "decision"), norm=np.inf, eps=eps, max_iter=max_iter,
                          nb_restarts=restarts, batch_size=batch_size, verbose=False)
    return attack.generate(np.asarray(x, np.float32), y=np.eye(ens.num_classes, dtype=np.float32)[y])


def apgd_ce(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, eps: float, max_iter: int = 100,
            restarts: int = 1, seed: int = 0, batch_size: int = 500) -> np.ndarray:
    """ART's APGD with cross-entropy on the log mean probability (L-inf): the reference implementation."""
    np.random.seed(seed)
    attack = AutoProjectedGradientDescent(classifier(ens, "log_mean_prob"), norm=np.inf, eps=eps,
                                          eps_step=2 * eps, max_iter=max_iter, nb_random_init=restarts,
                                          batch_size=batch_size, loss_type="cross_entropy", verbose=False)
    return attack.generate(np.asarray(x, np.float32), y=np.eye(ens.num_classes, dtype=np.float32)[y])
