"""Every attack's output checked before it counts, as a break or as a survivor.

An attack returns candidate adversarial images; the cascade does not trust
them.  An output is **valid** when every pixel is finite, lies in the pixel
box ``[0, 1]`` up to ``BOX_TOL``, and the perturbation's norm is within the
budget up to a relative ``NORM_SLACK`` plus an absolute ``NORM_ABS`` (float32
rounding: an L2 norm summed over 12,288 Tiny ImageNet pixels carries a
relative error near 1e-6; the slack is a hundred times that).  Only a valid
output that changes the deployed decision is a break.  An invalid one is
neither a break nor silent: the image stays in the cascade for the next
stage, and the stage's count of invalid outputs goes into the results file
(``stats[stage]['invalid']``), where the diagnostics flag it.

This is the check that caught ART 1.20.1's Square with ``norm=2`` returning
non-finite images (:mod:`empir_lib.attack.square`).  It needs no TensorFlow,
so the JAX suite (:mod:`empir_lib.attack.expected_jax`) uses it too.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import EmpirError

NORM_SLACK = 1e-4  # relative slack on eps (float32 rounding)
NORM_ABS = 1e-6    # absolute slack on eps (an eps of 0 still allows rounding noise)
BOX_TOL = 1e-6     # how far outside [0, 1] a pixel may be (float32 rounding of a clipped sum)


def perturbation_norms(x: np.ndarray, x_adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image L2 and L-infinity norms of ``x_adv - x`` (in float64; NaN where ``x_adv`` is not finite).

    The one owner of the threat models' norms: the attacks' output check
    (:func:`norms`, :func:`valid`) and the results files use it.
    """
    d = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    with np.errstate(invalid="ignore"):
        return np.sqrt((d ** 2).sum(1)), np.abs(d).max(1)


def norms(x: np.ndarray, xa: np.ndarray, norm: str) -> np.ndarray:
    """Per image: the L-inf or L2 norm of ``xa - x`` (in float64; NaN where the output is not finite)."""
    l2, linf = perturbation_norms(x, xa)
    return linf if norm == "linf" else l2


def valid(x: np.ndarray, xa: np.ndarray, threat: dict) -> np.ndarray:
    """Per image: is ``xa`` finite, in the box and within the threat model's budget (module docstring)?"""
    x, xa = np.asarray(x), np.asarray(xa)
    if xa.shape != x.shape:
        raise EmpirError(f"an attack returned images of shape {xa.shape} for inputs of shape {x.shape}.")
    flat = xa.reshape(len(xa), -1)
    finite = np.isfinite(flat).all(1)
    in_box = np.where(finite, (np.nan_to_num(flat, nan=-1.0) >= -BOX_TOL).all(1)
                      & (np.nan_to_num(flat, nan=2.0) <= 1.0 + BOX_TOL).all(1), False)
    nrm = norms(x, xa, threat["norm"])
    within = np.where(finite, np.nan_to_num(nrm, nan=np.inf) <= threat["eps"] * (1 + NORM_SLACK) + NORM_ABS, False)
    return finite & in_box & within
