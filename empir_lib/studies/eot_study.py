"""A stochastic-quantiser ensemble under EOT: Farkya et al.'s claim, attacked the way Athalye et al. ask.

Farkya, Raghavan and Ziskind (2023, abstract) report over 50% accuracy under
PGD at 5/255 on CIFAR-10, without adversarial training, for an ensemble of
stochastic-quantised members trained with a diversity objective, "even when
the attacker backpropagates through the stochastic quantiser".  A randomised
defence is attacked with Expectation over Transformation (EOT, Athalye et al.
2018, section 4): the attacker's gradient is the mean over S stochastic
passes (:func:`empir_lib.attack.objectives.expectation`).  This module measures,
as ``empir reproduce cifar10`` jobs under ``data/results/cifar10/stochastic/``:

1. ``eot-samples``: PGD at 5/255 with S = 1, 2, 4, ... EOT samples
   (:data:`EOT_SAMPLES`) on the first ``select_n`` images of the joint
   ensemble, one robust accuracy per S: how many samples the attack needs
   before its robust accuracy stops falling.  :func:`enough_samples` reads the
   S the other jobs use from that curve (the smallest S within
   :data:`TOLERANCE` of the lowest robust accuracy measured).  The curve
   stops early once an S leaves no image robust (no larger S can do better;
   the record's ``stopped_at_zero`` says so).
2. ``pgd-5-255-<row>``: that PGD on all ``n`` test images, for the joint
   stochastic ensemble (with the S of 1), deterministic EMPIR, the FP
   baseline and PGD adversarial training at 8/255 (:func:`rows`).  EOT
   over a deterministic network is its plain gradient S times, so the
   deterministic rows run with S = 1.
3. ``suite-5-255-<row>``: the whole worst-case suite (:mod:`empir_lib.attack.suite`)
   at 5/255 with the same EOT, on the first ``select_n`` images: every attack
   costs S times its deterministic cost, more than a 2-core CPU affords on
   10,000 images.
4. ``pgd-0-joint``, the **noise-only control**: the joint row's PGD job with
   eps = 0 on the same ``n`` images.  Every iterate is then the clean image,
   judged on a fresh draw, and each "break" re-checked on another: what the
   deployed randomness alone takes from the robust accuracy, given as many
   judged queries as the attack.  An attack on a randomised defence is only
   as strong as its margin over this control.
5. ``suite-5-255-joint-eot<S>``: the joint row's suite again with each S of
   :data:`CHECK_SAMPLES` on the first half of its images, to check on the
   strongest attacks, not only on PGD, whether more samples lower the robust
   accuracy further (compare :func:`empir_lib.book.chapters.stochastic.suite_checks`).
6. ``expected-*``: the robust accuracy as an **expected accuracy** over the
   defence's draws, converged in S and iterations, with the structure-aware
   attacks and AutoAttack's ``rand`` reference
   (:mod:`empir_lib.studies.expected_study`; issue 29).  Items 1 to 5 judge
   "broken" by one wrong draw, a rule that falls with the number of queries;
   they are kept for comparison, and the chapter leads with item 6.

The PGD is Table 1's CIFAR-10 PGD scaled to 5/255: 40 steps of eps / 10
(Table 1: eps 0.1, steps of 0.01), from a uniform random start, on the
cross-entropy of the members' mean probability (the suite's ``ce_mean_prob``).
**Judging**: every iterate is judged on the deployed decision, one stochastic
draw of the vote (``decision='draw'``: what one query of the deployed defence
answers), and each break the cascade keeps is re-checked on a fresh draw
(:func:`empir_lib.attack.suite.cascade`).  The clean accuracy is one draw too.  The
randomness diagnostic (:func:`empir_lib.nets.stochastic.disagreement`, the share
of images whose deployed class changes between 10 draws) is recorded with
every row.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..attack import outcomes, suite
from ..core import paper, settings
from ..core.errors import EmpirError, check_positive_int
from ..core.files import atomic_write
from ..nets import diversity, stochastic
from ..nets import ensemble as ens_mod
from . import expected_study, results, worstcase

FOLDER = "stochastic"
DATASETS = ("cifar10",)
THREAT = {"name": "linf-5-255", "norm": "linf", "eps": paper.FARKYA_EPS}
NOISE_ONLY = {"name": "linf-0", "norm": "linf", "eps": 0.0}  # the control: the attack's queries, no perturbation
EOT_SAMPLES = (1, 2, 4, 8, 16)
# The S a later job uses: the smallest whose robust accuracy is within this of the lowest measured.
TOLERANCE = 0.01
DECISION = "draw"
# The suite's further EOT settings (item 5): 8 lowered the robust accuracy below S = 2's; 16 checks that it stopped.
CHECK_SAMPLES = (8, 16)
PGD = {"name": "pgd-ce", "kind": "pgd", "loss": "ce_mean_prob", "n_iter": 40, "restarts": 1, "step_frac": 0.1}
RANDOMNESS_DRAWS = 10
PGDAT_ROW = "pgd-at_eps8"  # the Table 2 defence row whose network is the adversarially trained reference


def check_samples(samples: object) -> list[int]:
    """A non-empty, strictly increasing list of EOT sample counts, each an integer >= 1."""
    try:
        values = [check_positive_int(s, "EOT samples") for s in samples]  # type: ignore[union-attr]
    except TypeError:
        values = []
    if not values:
        raise EmpirError(f"EOT samples {samples!r}: pass a non-empty list of integers >= 1, e.g. {list(EOT_SAMPLES)}.")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise EmpirError(f"EOT samples {samples!r} are not sorted in increasing order without repeats.")
    return values


def rows(dataset: str) -> dict[str, list[str]]:
    """The rows compared: the joint stochastic ensemble, deterministic EMPIR, the FP baseline, and PGD
    adversarial training at 8/255 (chapter 10's network, the reference at a similar clean accuracy)."""
    s = settings.get(dataset)
    (pgdat,) = dict(s.defence_rows)[PGDAT_ROW]
    return {"joint": diversity.joint_ids(dataset), "empir": s.empir_ids, "baseline": [s.empir_fp],
            "pgdat": [settings.defended_id(dataset, pgdat)]}


def jobs(dataset: str, n: int, select_n: int) -> list[dict]:
    """The study's jobs in the order they must run (the EOT curve first: the others read their S from it)."""
    n, select_n = check_positive_int(n, "n"), check_positive_int(select_n, "select_n")
    r = rows(dataset)
    out = [{"name": f"{FOLDER}/eot-samples", "kind": "eot-samples", "members": r["joint"],
            "samples": list(EOT_SAMPLES), "n": min(select_n, n)}]
    for kind, size in (("pgd", n), ("suite", min(select_n, n))):
        for row, members in r.items():
            out.append({"name": f"{FOLDER}/{kind}-5-255-{row}", "kind": kind, "row": row, "members": members,
                        "n": size})
    out.append({"name": f"{FOLDER}/pgd-0-joint", "kind": "pgd", "row": "joint", "members": r["joint"], "n": n,
                "noise_only": True})
    for s in CHECK_SAMPLES:
        out.append({"name": f"{FOLDER}/suite-5-255-joint-eot{s}", "kind": "suite", "row": "joint",
                    "members": r["joint"], "n": max(1, min(select_n, n) // 2), "eot_samples": s})
    return out + expected_study.jobs(r["joint"], n)


def threat(job: dict) -> dict:
    """The job's threat model: 5/255, or eps = 0 for the noise-only control (module docstring, item 4)."""
    return NOISE_ONLY if job.get("noise_only") else THREAT


def enough_samples(curve: dict, tolerance: float = TOLERANCE) -> int:
    """The S a full evaluation uses: the smallest whose robust accuracy is within ``tolerance`` of the lowest.

    ``curve`` is an ``eot-samples`` record (``samples``, ``robust_accuracy``).
    Where the curve is still falling at its largest S this is that S, and the
    record's ``plateau`` says so.
    """
    acc = np.asarray(curve["robust_accuracy"], float)
    return int(curve["samples"][int(np.flatnonzero(acc <= acc.min() + tolerance)[0])])


def pgd_spec(samples: int) -> list[dict]:
    """The study's PGD as a one-attack suite, with EOT over ``samples`` draws judged on one draw."""
    samples = check_positive_int(samples, "EOT samples")
    return [dict(PGD) if samples == 1 else {**PGD, "eot_samples": samples, "decision": DECISION}]


def row_samples(job: dict, out_dir: Path) -> int:
    """The EOT samples a row's job uses: the job's own, else the curve's S (stochastic row) or 1."""
    if "eot_samples" in job:
        return check_positive_int(job["eot_samples"], "EOT samples")
    if job["row"] != "joint":
        return 1
    path = Path(out_dir) / f"{FOLDER}/eot-samples.json"
    if not path.is_file():
        raise EmpirError(f"{path} is missing: the EOT-samples curve decides how many samples "
                         f"{job['name']} uses; run 'empir reproduce cifar10 --only {FOLDER}/eot-samples' first.")
    return enough_samples(results.read_result(path))


def config(job: dict, ens: ens_mod.Ensemble, n: int, samples: int | None = None) -> dict:
    """What a job's results file must record for it to count as done (compared on rerun)."""
    cfg = {"kind": job["kind"], "members": list(job["members"]), "rule": ens.rule, "threat": threat(job), "n": n}
    if job["kind"] == "eot-samples":
        return {**cfg, "samples": check_samples(job["samples"]), "attack": dict(PGD), "decision": DECISION,
                "tolerance": TOLERANCE}
    specs = pgd_spec(samples) if job["kind"] == "pgd" else suite.attack_suite(ens, THREAT, samples, DECISION)
    return {**cfg, "eot_samples": samples, "attacks": specs}


def run_job(job: dict, dataset: str, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, out_dir: Path,
            partial_dir: Path, progress: bool = True, prov: dict | None = None) -> tuple[dict, bool]:
    """Run one job of the study unless its results file already holds the same configuration.

    The record carries ``robust_accuracy`` (for the log line) in every kind.
    """
    if job["kind"].startswith("expected"):  # the expected accuracy (item 6): its own module
        record, ran = expected_study.run_job(job, dataset, ens, x, y, out_dir, partial_dir, progress, prov)
        return {**record, "robust_accuracy": record["robust"], "robust_accuracy_at_chosen": record["robust"]}, ran
    n = min(job["n"], len(y))
    path = Path(out_dir) / f"{job['name']}.json"
    samples = None if job["kind"] == "eot-samples" else row_samples(job, out_dir)
    cfg = config(job, ens, n, samples)
    if (old := results.done(path, cfg)) is not None:
        return old, False
    t0 = time.perf_counter()
    xs, ys = x[:n], y[:n]
    stem = Path(partial_dir) / f"{dataset}-{job['name'].replace('/', '-')}"
    if job["kind"] == "eot-samples":
        record = _eot_curve(ens, xs, ys, cfg, stem, progress)
        record["robust_accuracy_at_chosen"] = record["robust_accuracy"][record["samples"].index(record["chosen"])]
    else:
        res = suite.cascade(ens, xs, ys, cfg["threat"], cfg["attacks"], state_path=stem.with_suffix(".npz"),
                            progress=progress)
        record = worstcase.summary(cfg, res["broken_by"], res["counts"], res["stats"], ys, ens)
        record["per_image"] = outcomes.save(path.with_suffix(".npz"), res["broken_by"], res["norm"])
        record["randomness"] = _randomness(ens, xs)
        record["wall_time_s"] = round(time.perf_counter() - t0 + res.get("resumed_s", 0.0), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = results.write_result(path, record, dataset, prov=prov)
    stem.with_suffix(".npz").unlink(missing_ok=True)
    stem.with_suffix(".json").unlink(missing_ok=True)
    return written, True


def _randomness(ens: ens_mod.Ensemble, x: np.ndarray) -> float:
    """Share of images whose deployed class changes between draws (0 for a deterministic ensemble)."""
    return round(stochastic.disagreement(ens, x, RANDOMNESS_DRAWS)["share"], 6)


def _eot_curve(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, cfg: dict, stem: Path, progress: bool) -> dict:
    """PGD with each S of ``cfg['samples']``; resumable per S (``<stem>.json`` holds the finished ones)."""
    part = stem.with_suffix(".json")
    done = json.loads(part.read_text()) if part.is_file() else {"config": cfg, "points": []}
    if done["config"] != json.loads(json.dumps(cfg)):
        raise EmpirError(f"{part} holds a partial EOT curve of another configuration; delete it to start again.")
    for s in cfg["samples"][len(done["points"]):]:
        if done["points"] and done["points"][-1]["robust_accuracy"] == 0:
            # Nothing is left to break (also when resuming): a larger S cannot lower the curve, and on a
            # 2-core CPU each S costs S times the attack.  The record's 'stopped_at_zero' says so.
            break
        t0 = time.perf_counter()
        res = suite.cascade(ens, x, y, cfg["threat"], pgd_spec(s), state_path=stem.with_suffix(".npz"),
                            progress=progress)
        robust = int(np.sum(res["broken_by"] == outcomes.ROBUST))
        lo, hi = outcomes.wilson_interval(robust, len(y))
        done["points"].append({"samples": s, "robust_accuracy": round(robust / len(y), 6),
                               "robust_ci95": [round(lo, 6), round(hi, 6)],
                               "clean_accuracy": round(1 - res["counts"]["clean"] / len(y), 6),
                               "seconds": round(time.perf_counter() - t0 + res.get("resumed_s", 0.0), 1)})
        stem.with_suffix(".npz").unlink(missing_ok=True)
        atomic_write(part, lambda p: Path(p).write_text(json.dumps(done)))
        if progress:
            print(f"  EOT {s:3d} samples: robust {robust / len(y):.4f} ({done['points'][-1]['seconds']:.0f} s)",
                  flush=True)
    pts = done["points"]
    record = {**cfg, **{k: [p[k] for p in pts] for k in ("samples", "robust_accuracy", "robust_ci95",
                                                          "clean_accuracy", "seconds")}}
    record["chosen"] = enough_samples(record, cfg["tolerance"])
    acc = record["robust_accuracy"]
    record["stopped_at_zero"] = len(acc) < len(cfg["samples"])
    # False while still falling at the largest S by more than the tolerance: more samples may lower it further.
    record["plateau"] = acc[-1] == 0 or (len(acc) > 1 and acc[-2] - acc[-1] <= cfg["tolerance"])
    record["randomness"] = _randomness(ens, x)
    record["wall_time_s"] = round(sum(record["seconds"]), 1)
    return record


def read(dataset: str, name: str, root: str | os.PathLike | None = None) -> dict | None:
    """A study results file (``'eot-samples'``, ``'pgd-5-255-joint'``, ...), or None while it is missing."""
    return results.find(dataset, f"{FOLDER}/{name}", root)
