"""Checks a reviewer applies to a robustness evaluation, each able to fail.

After Croce & Hein's AutoAttack (``checks.py``: zero gradients, Square beating
the white-box attacks) and Pintor et al. (2022), "Indicators of Attack
Failure", an evaluation is **suspicious** when:

* ``zero_gradients``: some attacked images have an exactly zero objective
  gradient at the start (the attacker is blind there: masking or saturation);
* ``black_box_beats_white_box``: the gradient-free Square attack breaks more
  than 0.2% of the images that every gradient attack on the ensemble failed
  on (AutoAttack's threshold): the gradients mislead;
* ``transfer_per_image``: more than 0.2% of the images (the same threshold)
  are broken *only* by a single-member or transfer stage, after every
  ensemble-level stage failed on them (:func:`transfer_check`): the
  ensemble's own gradient hides images a proxy's finds.  The aggregate
  ``transfer_beats_white_box`` below can stay silent while this fires;
* ``invalid_outputs``: some attack returned images that are not finite, not
  in the box or outside the budget (:mod:`empir_lib.attack.validate`); they
  counted as neither break nor survivor, but the stage did not do its job;
* ``no_progress``: among the images the first attack failed on, more than 10%
  ended with a best loss no higher than at the start: the optimiser did not
  move;
* ``unbounded_not_zero``: with the budget lifted (eps = 1 in L-inf, the
  box's diagonal in L2) APGD-CE must reach 0% on the first ``diag_n``
  correctly classified images; anything else means the attack, not the
  model, is failing;
* ``transfer_beats_white_box``: APGD-CE on the full-precision member alone,
  judged on the vote, breaks more of the first ``diag_n`` images than
  APGD-CE on the ensemble's own objective: the ensemble's gradient is worse
  than a proxy's.

:func:`run` returns the measured value of every check and the list of
raised flags; the results file stores both and the chapter prints the flags.
"""
from __future__ import annotations

import numpy as np

from ..nets import ensemble as ens_mod
from . import apgd, objectives, outcomes

SQUARE_ALPHA = 0.002
BLACK_BOX_FLAG = "black_box_beats_white_box"  # the flag a settled row answers (studies.suite_checks)
TRANSFER_SHARE = 0.002  # AutoAttack's Square threshold, applied to the per-image transfer check
NO_PROGRESS_SHARE = 0.10


def single_member(spec: dict) -> bool:
    """Is this stage an attack on one member alone (a single-member or transfer stage)?"""
    return spec.get("kind") in ("apgd", "pgd") and ":" in spec.get("loss", "")


def transfer_check(attacks: list[dict], broken_by: np.ndarray) -> dict:
    """Images broken only by a single-member or transfer stage, per stage and in all, with the flag's verdict.

    ``after_every_ensemble_stage`` says whether those stages ran after every
    ensemble-level stage (the suite's order); when some ensemble stage ran
    later (a committed cascade extended with new stages), the count is of
    images every *earlier* ensemble stage failed on.
    """
    broken_by = np.asarray(broken_by)
    idx = [j for j, s in enumerate(attacks, start=1) if single_member(s)]
    # Carried breaks (outcomes.CARRIED) were found elsewhere: no ensemble stage ran here after the members'.
    ensemble_after = any(not single_member(s) and s.get("kind") != outcomes.CARRIED
                         for s in attacks[min(idx, default=len(attacks)):])
    per = {attacks[j - 1]["name"]: int(np.sum(broken_by == j)) for j in idx}
    k = sum(per.values())
    share = k / len(broken_by) if len(broken_by) else 0.0
    return {"images": k, "share": share, "per_stage": per, "after_every_ensemble_stage": not ensemble_after,
            "flag": share > TRANSFER_SHARE}


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
    square = [s["name"] for s in specs if s["kind"] == "square" and s["name"] in stats]
    if square:
        k = sum(stats[q]["broken"] for q in square)
        values["square_broke_after_white_box"] = k
        if k > SQUARE_ALPHA * n:
            flags.append(f"{BLACK_BOX_FLAG}: Square broke {k} images every gradient attack missed")
    bad = {s: v["invalid"] for s, v in stats.items() if v.get("invalid")}
    values["invalid_outputs"] = sum(bad.values())
    if bad:
        flags.append("invalid_outputs: " + ", ".join(f"{s} returned {k} invalid images" for s, k in bad.items()))
    tc = transfer_check(specs, cascade["broken_by"])
    values["transfer_only_images"] = tc["images"]
    if tc["flag"]:
        flags.append(f"transfer_per_image: {tc['images']} images ({tc['share']:.2%}) were broken only by "
                     f"single-member or transfer stages ({', '.join(f'{k} {v}' for k, v in tc['per_stage'].items())}) "
                     "after every ensemble-level stage failed")
    # The cascade already knows which images the vote gets right: no second pass over the test set.
    correct = np.flatnonzero(np.asarray(cascade["broken_by"]) != outcomes.CLEAN)[:diag_n]
    if len(correct):
        xs, ys = x[correct], np.asarray(y)[correct]
        big = 1.0 if threat["norm"] == "linf" else float(np.sqrt(np.prod(x.shape[1:])))
        ce = objectives.loss_fn(ens, "ce_mean_prob")
        unbounded = apgd.run(ce, xs, ys, big, threat["norm"], 100, 1, seed)
        values["unbounded_robust"] = float(1 - unbounded.broken.mean())
        values["diag_n"] = int(len(correct))
        if not unbounded.broken.all():
            flags.append(f"unbounded_not_zero: with the budget lifted {int((~unbounded.broken).sum())} of "
                         f"{len(correct)} images survive APGD-CE")
        if len(ens.members) > 1 and any(ens.fp):
            fp = int(ens_mod.priority(ens)[0])
            white = apgd.run(ce, xs, ys, threat["eps"], threat["norm"], 100, 1, seed)
            transfer = apgd.run(objectives.loss_fn(ens, f"ce_member:{fp}"), xs, ys, threat["eps"], threat["norm"],
                                100, 1, seed)
            values["white_box_robust"] = float(1 - white.broken.mean())
            values["transfer_fp_robust"] = float(1 - transfer.broken.mean())
            if transfer.broken.sum() > white.broken.sum():
                flags.append(f"transfer_beats_white_box: APGD-CE on the FP member broke {int(transfer.broken.sum())} "
                             f"of {len(correct)} images, on the ensemble {int(white.broken.sum())}")
    return {"values": values, "flags": flags, "suspicious": bool(flags)}
