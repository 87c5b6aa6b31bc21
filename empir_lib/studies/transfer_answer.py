"""Transfer-only breaks, asked again: would the ensemble-level attacks break those images too, with more budget?

The per-image transfer check (:func:`empir_lib.attack.diagnostics.transfer_check`,
issue 30, item 2) flags a row when more than 0.2% of its images were broken
only by a single-member or transfer stage, after every ensemble-level
gradient stage had failed on them.  Two readings fit that evidence
(chapter 8, "Diagnostics"):

* **masking**: the ensemble's gradient hides the way to the examples that
  exist, and only an attack on one member finds them; or
* **budget**: the ensemble-level stages were near those examples and more
  iterations and restarts would have found them, as the re-check rounds find
  other survivors.

This asks the question directly.  The flagged images of a row's strongest
evaluation are attacked again, from the clean image, by the suite's
ensemble-level gradient stages at :data:`FACTOR` times their iterations and
restarts (:func:`empir_lib.attack.convergence.doubled`), with a new seed, in
the suite's cascade (every output validated, every break judged on the
vote).  If so few images stay unbroken that the check would not flag them
(:data:`empir_lib.attack.diagnostics.TRANSFER_SHARE`), the flag is
**answered**: the ensemble-level attack does find those examples, so they
are no sign of masking.  Otherwise it stays open, with the count.  The
row's number does not change: those images were broken already.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ..attack import convergence, diagnostics, outcomes, suite
from ..core.errors import EmpirError
from ..core.files import sha256
from ..nets import ensemble as ens_mod
from . import results, suite_checks

FACTOR = 8  # round 3's budget: more than any round reached on most rows' survivors in minutes
SEED = 30  # issue 30; the suite's own seed is 0, the rounds' 1 to 5


def file_name(row: str) -> str:
    """The results file of a row's answer: ``suite/empir-l2`` -> ``suite/empir-l2-transfer``."""
    return f"{row}-transfer"


def flagged(attacks: list[dict], broken_by: np.ndarray) -> np.ndarray:
    """The images of a cascade (its ``attacks`` and per-image ``broken_by``) broken only by a single-member stage."""
    stages = [j for j, s in enumerate(attacks, start=1) if diagnostics.single_member(s)]
    return np.flatnonzero(np.isin(broken_by, stages))


def check(evals: list[tuple[str, dict]]) -> dict:
    """A row's per-image transfer check, as its last evaluation that has one says it (each covers the cascade
    so far), or {}."""
    return next((r["transfer_check"] for _, r in reversed(evals) if "transfer_check" in r), {})


def stages(attacks: list[dict], factor: int = FACTOR) -> list[dict]:
    """The suite's own ensemble-level gradient stages of a cascade, at ``factor`` times their budget, renamed."""
    own = [a for a in attacks if convergence.round_of(a["name"]) == 0 and a["kind"] in ("apgd", "pgd", "apgd-t")
           and not diagnostics.single_member(a)]
    return [{**s, "name": f"x{factor}-" + s["name"].removeprefix(convergence.prefix(1))}
            for s in convergence.doubled(own, factor)]


def run(dataset: str, row: str, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, factor: int = FACTOR,
        seed: int = SEED, root: str | os.PathLike | None = None, progress: bool = True,
        prov: dict | None = None) -> dict:
    """Attack a row's flagged images again at the ensemble level (module docstring) and write the answer."""
    evals = suite_checks.evaluations(dataset, row, root)
    if not evals:
        raise EmpirError(f"{dataset} has no suite row {row}; run 'empir reproduce {dataset} --only {row}' first.")
    name, last = evals[-1]
    folder = results.results_dir(dataset, root)
    if list(last["members"]) != list(ens.names) or len(y) < last["n"]:
        raise EmpirError(f"{name} is of {last['members']} on {last['n']} images; got {list(ens.names)} on {len(y)}.")
    idx = flagged(last["attacks"], outcomes.load(folder / f"{name}.json", last)["broken_by"])
    if not len(idx):
        raise EmpirError(f"{name}: no image was broken only by a single-member stage; there is nothing to ask.")
    specs = stages(last["attacks"], factor)
    t0 = time.perf_counter()
    res = suite.cascade(ens, x[idx], y[idx], last["threat"], specs, seed=seed, progress=progress)
    left = int(np.sum(res["broken_by"] == outcomes.ROBUST))
    if np.any(res["broken_by"] == outcomes.CLEAN):
        raise EmpirError(f"{name}: images it calls broken by an attack are misclassified clean now; its per-image "
                         "file is not of this ensemble.")
    record = {"kind": "transfer-answer", "members": list(ens.names), "threat": last["threat"], "n": int(last["n"]),
              "of": {"name": name, "sha256": sha256(folder / f"{name}.json")}, "factor": factor, "seed": seed,
              "attacks": specs, "images": len(idx), "index": idx.tolist(), "broken_by": res["counts"],
              "broken": len(idx) - left, "remaining": left, "remaining_share": round(left / last["n"], 6),
              "answered": left / last["n"] <= diagnostics.TRANSFER_SHARE,
              "stats": {k: {**v, "seconds": round(v["seconds"], 1)} for k, v in res["stats"].items()},
              "invalid_outputs": {k: v.get("invalid", 0) for k, v in res["stats"].items()},
              "wall_time_s": round(time.perf_counter() - t0, 1)}
    return results.write_result(folder / f"{file_name(row)}.json", record, dataset, prov=prov)


def read(dataset: str, row: str, root: str | os.PathLike | None = None,
         evals: list[tuple[str, dict]] | None = None) -> dict | None:
    """A row's answer, if it was asked of the row's strongest evaluation as it is now (else None: stale or absent).

    ``evals``: the row's :func:`empir_lib.studies.suite_checks.evaluations`, when the caller has read them.
    """
    answer = results.find(dataset, file_name(row), root)
    evals = suite_checks.evaluations(dataset, row, root) if evals is None else evals
    if answer is None or not evals:
        return None
    name = evals[-1][0]
    current = sha256(results.results_dir(dataset, root) / f"{name}.json")
    return answer if answer["of"] == {"name": name, "sha256": current} else None


def sentence(answer: dict) -> str:
    """What the answer found, for a card's flag (open or answered) and chapter 8."""
    return (f"the ensemble-level stages at {answer['factor']}x their budget, from the clean image, broke "
            f"{answer['broken']} of the {answer['images']} too ({answer['remaining']} remain, "
            f"{100 * answer['remaining_share']:.2f}% of the images)")
