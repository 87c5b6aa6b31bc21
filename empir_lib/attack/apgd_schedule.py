"""APGD's step-size schedule (Croce & Hein 2020, Algorithm 1): pure NumPy, so that both APGDs share it.

:mod:`empir_lib.attack.apgd` (TensorFlow) and
:mod:`empir_lib.attack.expected_jax` (JAX, for an accelerator) read the
checkpoints, the oscillation threshold ``rho`` and the momentum from here.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import check_positive_int

RHO = 0.75
MOMENTUM = 0.75


def checkpoints(n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """APGD's checkpoint schedule: (is iteration i a checkpoint, the window length there).

    As in the reference code: the first window is ``max(int(0.22 n), 1)``
    iterations, each next one ``max(int(0.03 n), 1)`` shorter, never below
    ``max(int(0.06 n), 1)``.
    """
    n_iter = check_positive_int(n_iter, "n_iter")
    k, kmin, decr = max(int(0.22 * n_iter), 1), max(int(0.06 * n_iter), 1), max(int(0.03 * n_iter), 1)
    check, window = np.zeros(n_iter, bool), np.zeros(n_iter, np.int32)
    counter = 0
    for i in range(n_iter):
        counter += 1
        if counter == k:
            check[i], window[i] = True, k
            k, counter = max(k - decr, kmin), 0
    return check, window
