"""A suite row extended with new stages, re-checked for convergence, and the minimal L2 that always succeeds.

Three job kinds of ``empir reproduce`` beside the suite's cascades
(:mod:`empir_lib.studies.worstcase` dispatches to :func:`run_job`), each
writing ``data/results/<dataset>/suite/<name>.json`` with provenance and its
per-image ``.npz``:

* ``stages`` (``<row>-<threat>-stages``): the committed row's cascade on its
  first ``n`` images, continued with the stages of the current suite it did
  not run (APGD-T, Square at 5,000 queries, Square-L2), on its survivors
  only (``only``: just the named new stages, when time allows no more; the
  file then lists the stages run).  ``robust_before`` and ``robust_after`` are the row's robust images
  on those ``n`` images before and after; the per-image file holds the whole
  continued cascade;
* ``late`` (``<row>-<threat>-late-stages``): as ``stages``, on the
  survivors of a row whose last re-check round converged (its base), for a
  stage the suite gained after that round ran (the 5,000-query Square where
  a stages job was cut to APGD-T).  Every break the rounds found is kept;
  ``converged`` says the late stages moved the row by less than the
  tolerance, and only then does the row's verdict stay "converged";
* ``recheck`` (``<row>-<threat>-recheck``): the survivors of a row (its
  ``base`` file, e.g. the ``stages`` file) re-attacked with doubled
  iterations and restarts and another seed
  (:mod:`empir_lib.attack.convergence`): ``change_points`` and ``converged``;
* ``min_norm`` (``empir-min-norm``): the minimal L2 per image from the
  boundary start and APGD's bisection (:mod:`empir_lib.attack.minnorm`):
  ``success_rate`` (1.0 on every correctly classified image unless the vote
  is constant), ``median_l2`` and its bootstrap ``median_ci95``.  It
  replaces CW's ``empir-min-l2`` figure; that file stays for comparison.

Each job resumes from its last finished chunk (the cascade's state file) and
is skipped when its results file already holds the same configuration.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from ..attack import convergence, diagnostics, minnorm, outcomes, suite
from ..core.errors import EmpirError
from ..nets import ensemble as ens_mod
from . import results

FOLDER = "suite"
KINDS = ("stages", "late", "recheck", "min_norm")


def new_stages(ens: ens_mod.Ensemble, threat: dict, done: list[dict]) -> list[dict]:
    """The current suite's stages a finished cascade ``done`` did not run (a clashing name gets the queries)."""
    taken = {s["name"] for s in done}
    out = []
    for s in suite.attack_suite(ens, threat):
        if any(s == d for d in done):
            continue
        if s["name"] in taken:
            s = {**s, "name": f"{s['name']}-{s.get('queries', 'new')}"}
        out.append(s)
    return out


def _base(dataset: str, job: dict, out_dir: Path, n: int) -> tuple[dict, dict, str]:
    """The job's base row (record, per-image arrays cut to ``n``, its name), checked."""
    path = Path(out_dir) / f"{job['base']}.json"
    record = results.read_result(path)
    arrays = outcomes.load(path, record)
    if record["n"] < n or record["members"] != list(job["members"]):
        raise EmpirError(f"{path} covers {record['n']} images of {record['members']}; the job needs the first {n} "
                         f"of {job['members']}.")
    return record, {k: arrays[k][:n] for k in ("broken_by", "norm")}, job["base"]


def config(job: dict, dataset: str, ens: ens_mod.Ensemble, n: int, out_dir: Path) -> dict:
    """What the job's results file must record for it to count as done."""
    threat = suite.threat(dataset, job["threat"])
    cfg = {"members": list(job["members"]), "rule": ens.rule, "threat": {"name": job["threat"], **threat},
           "n": n, "kind": job["kind"]}
    if job["kind"] == "min_norm":
        # Two "stages": the per-image file says which gave each image's smallest perturbation.
        return {**cfg, "attacks": [{"name": "boundary", "kind": "boundary", "line_steps": minnorm.LINE_STEPS},
                                   {"name": "apgd-bisection", "kind": "apgd-bisection", "loss": "ce_mean_prob",
                                    "n_iter": minnorm.N_ITER, "bisect_steps": minnorm.BISECT_STEPS}]}
    record, _, name = _base(dataset, job, out_dir, n)
    done = record["attacks"]
    more = convergence.next_round(done)[1] if job["kind"] == "recheck" else new_stages(ens, threat, done)
    if job.get("only"):  # a stages job cut to the named new stages (the others said not run, in "only")
        more = [s for s in more if s["name"] in job["only"]]
        cfg["only"] = list(job["only"])
    return {**cfg, "attacks": done + more, "base": {"name": name, "sha256": record["per_image"]["sha256"]}}


def run_job(job: dict, dataset: str, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, out_dir: Path,
            partial_dir: Path, progress: bool = True, prov: dict | None = None) -> tuple[dict, bool]:
    """Run one job of :data:`KINDS` unless its results file already holds the same configuration."""
    n = min(job["n"], len(y))
    path = Path(out_dir) / f"{job['name']}.json"
    cfg = config(job, dataset, ens, n, out_dir)
    if (old := results.done(path, cfg)) is not None:
        return old, False
    t0 = time.perf_counter()
    xs, ys = x[:n], y[:n]
    state = Path(partial_dir) / f"suite-{dataset}-{job['name'].replace('/', '-')}.npz"
    threat = suite.threat(dataset, job["threat"])
    if job["kind"] == "min_norm":
        res = minnorm.minimal_l2_resumable(ens, xs, ys, state, cfg, progress)
        record = {**cfg, "clean_accuracy": round(float(np.mean(res["broken_by"] != outcomes.CLEAN)), 6),
                  "broken_by": outcomes.counts(res["broken_by"], [a["name"] for a in cfg["attacks"]]),
                  "robust_accuracy": round(float(np.mean(res["broken_by"] == outcomes.ROBUST)), 6),
                  **{k: res[k] for k in ("success_rate", "attacked", "found", "median_l2", "median_ci95",
                                         "from_apgd", "from_boundary")},
                  "stats": {"min-norm": {"seconds": round(res["seconds"], 1)}}}
    else:
        base, arrays, _ = _base(dataset, job, out_dir, n)
        done = base["attacks"]
        before = int(np.sum(arrays["broken_by"] == outcomes.ROBUST))
        if job["kind"] == "recheck":
            res = convergence.recheck(ens, xs, ys, threat, done, arrays["broken_by"], arrays["norm"],
                                      state_path=state, progress=progress)
        else:
            start = {**arrays, "stats": {a["name"]: {"seconds": 0.0} for a in done}}
            # Chunks a session can finish (a 5,000-query Square on thousands of survivors runs for hours).
            chunk = min(convergence.chunk_for(s) for s in cfg["attacks"][len(done):])
            res = suite.cascade(ens, xs, ys, threat, cfg["attacks"], chunk=chunk, state_path=state,
                                progress=progress, start=start)
            res["stats"] = {k: v for k, v in res["stats"].items() if k not in {a["name"] for a in done}}
        after = int(np.sum(res["broken_by"] == outcomes.ROBUST))
        lo, hi = outcomes.wilson_interval(after, n)
        record = {**cfg, "clean_accuracy": round(float(np.mean(res["broken_by"] != outcomes.CLEAN)), 6),
                  "robust_before": before, "robust_after": after, "robust_accuracy": round(after / n, 6),
                  "robust_ci95": [round(lo, 6), round(hi, 6)], "change_points": round(100 * (before - after) / n, 4),
                  "converged": bool(100 * (before - after) / n < convergence.TOLERANCE_POINTS),
                  "broken_by": res["counts"],
                  "stats": {k: {**v, "seconds": round(v["seconds"], 1)} for k, v in res["stats"].items()},
                  "transfer_check": diagnostics.transfer_check(cfg["attacks"], res["broken_by"]),
                  "invalid_outputs": {k: v.get("invalid", 0) for k, v in res["stats"].items()}}
        if job["kind"] == "recheck":  # it stops once the row has moved by the tolerance: that verdict is final
            record.update(stages_run=res["stages_run"], stopped_early=res["stopped_early"],
                          stopped_in=res.get("stopped_in"))
            for c in convergence.checkpoints(state, len(done)):
                c.unlink(missing_ok=True)
    return write(path, record, res, time.perf_counter() - t0, dataset, prov, state), True


def write(path: Path, record: dict, res: dict, seconds: float, dataset: str, prov: dict | None,
          state: Path | None) -> dict:
    """Write a suite job's per-image file and results file (its time plus earlier, interrupted invocations')."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record["per_image"] = outcomes.save(path.with_suffix(".npz"), res["broken_by"], res["norm"])
    record["wall_time_s"] = round(seconds + res.get("resumed_s", 0.0), 1)
    written = results.write_result(path, record, dataset, prov=prov)
    if state is not None:  # the job is done: its resume state goes
        state.unlink(missing_ok=True)
    return written


ROUNDS = 5  # re-check rounds a row may need before it stops moving (round r: 2**r times the suite's budget)
# A row's evaluations, weakest first: the suite, its new stages, its re-check rounds, late stages.
# Round r's file suffix is its stage-name prefix (convergence.prefix) made a suffix: -recheck, -recheck2, ...
RECHECKS = tuple("-" + convergence.prefix(r).removesuffix("-") for r in range(1, ROUNDS + 1))
LATE = "-late-stages"  # stages the suite gained after the row's re-check converged, run on its survivors
SUFFIXES = ("", "-stages", *RECHECKS, LATE)


def evaluations(dataset: str, name: str, root: str | os.PathLike | None = None) -> list[tuple[str, dict]]:
    """A suite row's evaluations present, weakest first, as (results name, record); ``name`` is the suite's file.

    Each later one covers the first n images of the one before and holds the
    whole cascade per image, so the last is the row's strongest evaluation.
    One that continues another version of the evaluation before it (its
    ``base`` name or per-image sha256 differ: that row was re-run since, e.g.
    on more images) raises: a stale evaluation is never quoted.
    """
    out: list[tuple[str, dict]] = []
    for suffix in SUFFIXES:
        r = results.find(dataset, f"{name}{suffix}", root)
        if r is None:
            continue
        b, prev = r.get("base"), out[-1] if out else None
        if b is not None and prev is not None and \
                (b["name"], b.get("sha256")) != (prev[0], prev[1].get("per_image", {}).get("sha256")):
            raise EmpirError(f"{dataset} {name}{suffix} continues another version of {prev[0]} (re-run since): "
                             f"run it again on the new one (scripts/attack_stages.py) or restore the old files.")
        out.append((f"{name}{suffix}", r))
    return out


def recheck_of(evals: list[tuple[str, dict]]) -> dict | None:
    """The last re-check round among a row's :func:`evaluations` (the only one that can say a number stopped moving)."""
    return next((r for name, r in reversed(evals) if name.endswith(RECHECKS)), None)


def converged(evals: list[tuple[str, dict]]) -> bool | None:
    """Whether a row's :func:`evaluations` say its number stopped moving (None: never re-checked).

    The last re-check round's verdict, unless late stages ran after it: they
    must then also have moved the row by less than the tolerance.  A row
    with nothing robust is converged (no attack can lower it).
    """
    last = evals[-1][1]
    if last.get("robust_after", last.get("robust_accuracy")) == 0:
        return True
    rc = recheck_of(evals)
    if rc is None:
        return None
    late = [r for name, r in evals if name.endswith(LATE)]
    return bool(rc["converged"]) and all(bool(r["converged"]) for r in late)


def settling(dataset: str, name: str, root: str | os.PathLike | None = None) -> dict | None:
    """How a suite row's number was settled: its robust images after each evaluation, on the same images.

    ``name`` is the suite's file (e.g. ``suite/empir-l2``).  Each step of
    :func:`evaluations` is counted on the last one's first ``n`` images from
    its per-image file: the suite alone, its new stages, each re-check
    round (``factor``: round r runs 2**r times the suite's budget), then
    late stages; ``carried``: breaks carried into it (``chains.carry``).
    ``converged``: :func:`converged`.  None without files.
    """
    evals = evaluations(dataset, name, root)
    if not evals:
        return None
    n = evals[-1][1]["n"]
    steps = []
    for nm, r in evals:
        broken = outcomes.load(results.results_dir(dataset, root) / f"{nm}.json", r)["broken_by"][:n]
        k = RECHECKS.index(nm.removeprefix(name)) + 1 if nm.endswith(RECHECKS) else 0
        kind = "suite" if nm == name else "late" if nm.endswith(LATE) else "stages" if k == 0 else "round"
        steps.append({"name": nm, "kind": kind,
                      "round": k, "factor": 2 ** k if k else None,
                      "robust": int(np.sum(broken == outcomes.ROBUST)), "only": r.get("only"),
                      "carried": r.get("carried", {}).get("images", 0),
                      "seconds": r.get("timing", {}).get("wall_time_s")})
    return {"name": name, "n": n, "suite_n": evals[0][1]["n"], "steps": steps, "converged": converged(evals)}


# The diagnostics' flags a settled row answers (chapter 8).  Each says a gradient-free stage broke
# images every gradient stage missed, so the gradient stages alone overstate robustness.  The new
# stages (a targeted APGD, a 5,000-query Square) then attack exactly the survivors, and a converged
# re-check doubles every stage without moving the number: it no longer rests on the gradients the flag
# distrusts.  Zero gradients or a failing unbounded attack say the attack itself is blind; no budget
# answers those, so they stay open.
ANSWERED_BY_SETTLING = (diagnostics.BLACK_BOX_FLAG,)


def settled_flags(flags: list[str], evals: list[tuple[str, dict]]) -> tuple[list[str], list[str]]:
    """(open, answered): a row's diagnostic ``flags`` split by whether its :func:`evaluations` answered them.

    A flag in :data:`ANSWERED_BY_SETTLING` is answered once the row ran the
    new stages, the 5,000-query Square among them (:func:`long_square`; a
    stages job cut to APGD-T answers no black-box flag, late stages after
    the re-check may supply it), and the row :func:`converged`; every other
    flag stays open, and with it the row is unverified (issue 30, item 6).
    """
    settled = any(name.endswith("-stages") and long_square(r) for name, r in evals) and \
        recheck_of(evals) is not None and converged(evals) is True
    answered = [f for f in flags if settled and f.startswith(ANSWERED_BY_SETTLING)]
    return [f for f in flags if f not in answered], answered


def long_square(record: dict) -> bool:
    """Whether an evaluation's cascade ran Square at AutoAttack's budget (:data:`suite.SQUARE_QUERIES` queries)."""
    return any(a.get("kind") == "square" and a.get("queries", 0) >= suite.SQUARE_QUERIES
               for a in record.get("attacks", []))


def next_recheck(dataset: str, name: str, root: str | os.PathLike | None = None) -> tuple[str, str] | None:
    """(job name, base name) of the next re-check round of the suite row ``name``; None once it converged.

    Round 1 re-checks the row's strongest evaluation (its new stages when
    it has them); each later round re-checks the round before, which moved.
    """
    evals = evaluations(dataset, name, root)
    if not evals:
        raise EmpirError(f"{dataset} has no suite row {name}; run 'empir reproduce {dataset} --only {name}' first.")
    last, record = evals[-1]
    if last.endswith(LATE):
        if record["converged"]:
            return None
        raise EmpirError(f"{last} moved the converged row by {record['change_points']} points; no round re-checks "
                         "late stages: report it as an upper bound.")
    if not last.endswith(RECHECKS):
        return name + RECHECKS[0], last
    if record["converged"]:
        return None
    r = RECHECKS.index(last[len(name):]) + 2
    if r > ROUNDS:
        raise EmpirError(f"{last} still moved after {ROUNDS} re-check rounds ({2 ** ROUNDS} times the suite's "
                         "budget): report it as an upper bound.")
    return name + RECHECKS[r - 1], last


def late_base(dataset: str, name: str, root: str | os.PathLike | None = None) -> tuple[str, str]:
    """(job name, base name) of the late stages of the suite row ``name``: its converged last re-check round.

    Late stages are only for a row whose number stopped moving without a
    stage the suite has now; a row still moving gets another round instead.
    """
    evals = evaluations(dataset, name, root)
    last, record = evals[-1] if evals else (None, None)
    if last is not None and last.endswith(LATE):  # already run: the same job (kept unless its stages changed)
        return last, record["base"]["name"]
    if last is None or not last.endswith(RECHECKS) or not record["converged"]:
        raise EmpirError(f"{dataset} {name}: late stages follow a converged re-check round; its last evaluation is "
                         f"{last}.")
    return name + LATE, last


def row_summary(dataset: str, row: str, threat: str, root: str | os.PathLike | None = None) -> dict:
    """One suite row before and after the new stages and its re-check, from the committed files (None if absent).

    ``before``/``after``: robust images (and n) of the row on the stages
    file's first n images; ``broke``: what each new stage broke;
    ``recheck``: the re-check's change in points and verdict; seconds of each job.
    """
    base = results.results_dir(dataset, root) / FOLDER
    out: dict = {"row": row, "threat": threat}
    stages = base / f"{row}-{threat}-stages.json"
    if stages.is_file():
        r = results.read_result(stages)
        out.update(n=r["n"], before=r["robust_before"], after=r["robust_after"],
                   broke={k: v["broken"] for k, v in r["stats"].items()}, invalid=r["invalid_outputs"],
                   stages_s=r["timing"]["wall_time_s"], transfer_check=r["transfer_check"])
    rounds = [{"n": r["n"], "before": r["robust_before"], "after": r["robust_after"],
               "change_points": r["change_points"], "converged": r["converged"],
               "broke": {k: v["broken"] for k, v in r["stats"].items() if v["broken"]},
               "seconds": r["timing"]["wall_time_s"], "base": r["base"]["name"]}
              for name, r in evaluations(dataset, f"{FOLDER}/{row}-{threat}", root) if name.endswith(RECHECKS)]
    if rounds:
        out.update(recheck=rounds[-1], rounds=rounds)
    return out


def where_from(dataset: str, first: str, second: str, root: str | os.PathLike | None = None) -> dict:
    """Per image, two suite files on the same images: robust in both, only in one, and what broke the others.

    ``first`` and ``second`` name files under ``suite/`` (e.g.
    ``empir-l2-stages`` and ``baseline-l2-stages``); compared on the images
    both cover.  ``only_first_broken_in_second_by`` counts, for the images
    only ``first`` keeps, the stage of ``second`` that broke them (``clean``:
    ``second`` misclassifies them to begin with).
    """
    recs = {}
    for name in (first, second):
        path = results.results_dir(dataset, root) / FOLDER / f"{name}.json"
        rec = results.read_result(path)
        recs[name] = (rec, outcomes.load(path, rec)["broken_by"])
    n = min(len(b) for _, b in recs.values())
    (ra, a), (rb, b) = recs[first], recs[second]
    a, b = a[:n], b[:n]
    ra_names, rb_names = ["clean", *(s["name"] for s in ra["attacks"])], ["clean", *(s["name"] for s in rb["attacks"])]
    only_a = (a == outcomes.ROBUST) & (b != outcomes.ROBUST)
    only_b = (b == outcomes.ROBUST) & (a != outcomes.ROBUST)

    def by(stage_of, names, mask):
        vals, counts = np.unique(stage_of[mask], return_counts=True)
        return {names[int(v)]: int(c) for v, c in zip(vals, counts)}

    return {"n": int(n), "first": first, "second": second,
            "robust_first": int(np.sum(a == outcomes.ROBUST)), "robust_second": int(np.sum(b == outcomes.ROBUST)),
            "both": int(np.sum((a == outcomes.ROBUST) & (b == outcomes.ROBUST))),
            "only_first": int(only_a.sum()), "only_second": int(only_b.sum()),
            "only_first_broken_in_second_by": by(b, rb_names, only_a),
            "only_second_broken_in_first_by": by(a, ra_names, only_b)}


def strongest_pair(dataset: str, first: list[tuple[str, dict]], second: list[tuple[str, dict]],
                   root: str | os.PathLike | None = None) -> dict:
    """:func:`where_from` on two rows' strongest evaluations (the last of each row's :func:`evaluations`)."""
    return where_from(dataset, *(e[-1][0].removeprefix(f"{FOLDER}/") for e in (first, second)), root)
