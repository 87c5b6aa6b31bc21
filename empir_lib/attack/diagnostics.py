"""Checks a reviewer applies to a robustness evaluation, each able to fail.

After Croce & Hein's AutoAttack (``checks.py``: zero gradients, Square beating
the white-box attacks) and Pintor et al. (2022), "Indicators of Attack
Failure", an evaluation is **suspicious** when:

* ``zero_gradients``: some attacked images have an exactly zero surrogate
  gradient at the start (the attacker is blind there: masking or saturation);
* ``black_box_beats_white_box``: the gradient-free Square attack breaks more
  than 0.2% of the images that every gradient attack failed on (AutoAttack's
  threshold): the gradients mislead;
* ``no_progress``: among the images the first attack failed on, more than 10%
  ended with a best loss no higher than at the start: the optimiser did not
  move;
* ``unbounded_not_zero``: with the budget lifted (eps = 1 in L-inf, the
  box's diagonal in L2) APGD-CE must reach 0% on the first ``diag_n``
  correctly classified images; anything else means the attack, not the
  model, is failing;
* ``transfer_beats_white_box``: APGD-CE on the full-precision member alone,
  judged on the vote, breaks more of the first ``diag_n`` images than
  APGD-CE on the ensemble's own surrogate: the ensemble's gradient is worse
  than a proxy's.

:func:`run` returns the measured value of every check and the list of
raised flags; the results file stores both and the chapter prints the flags.
"""
from __future__ import annotations

import numpy as np

from ..nets import ensemble as ens_mod
from . import apgd, outcomes, surrogates

SQUARE_ALPHA = 0.002
NO_PROGRESS_SHARE = 0.10


def run(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, threat: dict, cascade: dict, diag_n: int = 100,
        seed: int = 0) -> dict:
    """Measure every check for one cascade (see the module docstring) and flag the ones that fail."""
    specs, stats, n = cascade["config"]["attacks"], cascade["stats"], len(y)
    grad = [s["name"] for s in specs if s["kind"] in ("apgd", "pgd") and s["name"] in stats]
    attacked = sum(stats[g]["attacked"] for g in grad)
    zero = sum(stats[g]["zero_grad"] for g in grad)
    values: dict = {"zero_gradient_share": zero / attacked if attacked else 0.0}
    flags = []
    if zero:
        flags.append(f"zero_gradients: {zero} of {attacked} attacked images had a zero gradient at the start")
    if grad:
        first = stats[grad[0]]
        left = first["attacked"] - first["broken"]
        share = first["no_progress"] / left if left else 0.0
        values["no_progress_share"] = share
        if share > NO_PROGRESS_SHARE:
            flags.append(f"no_progress: the loss never rose for {share:.0%} of the images {grad[0]} failed on")
    if "square" in stats:
        k = stats["square"]["broken"]
        values["square_broke_after_white_box"] = k
        if k > SQUARE_ALPHA * n:
            flags.append(f"black_box_beats_white_box: Square broke {k} images every gradient attack missed")
    # The cascade already knows which images the vote gets right: no second pass over the test set.
    correct = np.flatnonzero(np.asarray(cascade["broken_by"]) != outcomes.CLEAN)[:diag_n]
    if len(correct):
        xs, ys = x[correct], np.asarray(y)[correct]
        big = 1.0 if threat["norm"] == "linf" else float(np.sqrt(np.prod(x.shape[1:])))
        ce = surrogates.loss_fn(ens, "ce_mean_prob")
        unbounded = apgd.run(ce, xs, ys, big, threat["norm"], 100, 1, seed)
        values["unbounded_robust"] = float(1 - unbounded.broken.mean())
        values["diag_n"] = int(len(correct))
        if not unbounded.broken.all():
            flags.append(f"unbounded_not_zero: with the budget lifted {int((~unbounded.broken).sum())} of "
                         f"{len(correct)} images survive APGD-CE")
        if len(ens.members) > 1 and any(ens.fp):
            fp = int(ens_mod.priority(ens)[0])
            white = apgd.run(ce, xs, ys, threat["eps"], threat["norm"], 100, 1, seed)
            transfer = apgd.run(surrogates.loss_fn(ens, f"ce_member:{fp}"), xs, ys, threat["eps"], threat["norm"],
                                100, 1, seed)
            values["white_box_robust"] = float(1 - white.broken.mean())
            values["transfer_fp_robust"] = float(1 - transfer.broken.mean())
            if transfer.broken.sum() > white.broken.sum():
                flags.append(f"transfer_beats_white_box: APGD-CE on the FP member broke {int(transfer.broken.sum())} "
                             f"of {len(correct)} images, on the ensemble {int(white.broken.sum())}")
    return {"values": values, "flags": flags, "suspicious": bool(flags)}
