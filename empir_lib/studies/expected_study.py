"""The stochastic ensemble's robust accuracy as an expected accuracy, converged (issue 29).

Three ``empir reproduce cifar10`` jobs under ``data/results/cifar10/stochastic/``
(registered by :func:`empir_lib.studies.eot_study.jobs`), all at L-inf 5/255
(Farkya et al.'s setting) on the jointly trained stochastic ensemble, each
estimating per image the expected accuracy over R = 32 fresh draws
(:mod:`empir_lib.attack.expected`):

1. ``expected-converge`` (run second: the headline does not wait for it):
   EOT APGD-CE with every (S, N) of :data:`GRID`
   (S EOT samples per gradient, N iterations) on the same first
   :data:`CONVERGE_N` images, paired.  :func:`converged` picks the setting to
   quote: the first (S, N) whose doubling of both S and N changes the robust
   expected accuracy by less than :data:`TOLERANCE` (half a point).
2. ``expected-suite-joint``: every stage of
   :func:`empir_lib.attack.expected_suite.suite` at :data:`HEADLINE` (S, N)
   on the first :data:`HEADLINE_N` images: per image the worst case over the
   stages, re-estimated on fresh draws; with the lottery (the "any of Q
   queries" share against Q at the final points, and at the clean images,
   the noise-only control with the same Q).
3. ``expected-aa-rand``: AutoAttack's ``rand`` protocol (APGD-CE and
   APGD-DLR, 20 EOT samples, 100 iterations) as a reference run on the
   first :data:`AA_N` images (the first of the convergence images).

Sizes are set by the cost on a shared 2-core CPU (measured and recorded in
each file's ``seconds``), not by what the question deserves; the chapter
says so.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..attack import expected, expected_suite
from ..core.errors import EmpirError
from ..core.files import atomic_write
from ..nets import ensemble as ens_mod
from . import results

FOLDER = "stochastic"
EPS = 5 / 255
# (S, N) in order of cost; the doubling pairs are (S, N) -> (2S, 2N).
GRID = ((8, 25), (16, 25), (32, 25), (16, 50), (64, 25), (32, 50), (64, 50), (128, 25), (128, 50))
# The headline's (S, N): what every stage on HEADLINE_N images costs on a shared 2-core CPU within the
# study's hour (measured: about 15 ms per image, sample and step of the three members, at the load of the
# day, the process getting a fifth of a core); the convergence run says how far it is from larger
# settings on the paired images.
HEADLINE = (16, 25)
TOLERANCE = 0.005
CONVERGE_N = 40
HEADLINE_N = 60
AA_N = 10
QUERIES = (1, 2, 5, 10, 20, 50, 100)
# The cheaper stages' settings: Square's queries and S, and the members' S (each member stage runs every
# member, so it costs a whole stage).
SQUARE = {"square_queries": 100, "square_samples": 4, "member_samples": 4}


def jobs(members: list[str], n: int) -> list[dict]:
    """The three jobs (module docstring), each on at most ``n`` images."""
    # Row 'expected': these jobs wait for no EOT curve (reproduce's _eot_needs reads 'joint' as waiting).
    base = {"members": list(members), "row": "expected", "draws": expected.DRAWS}
    # The headline first: it is the chapter's number, and it does not wait for the grid.
    return [{**base, "name": f"{FOLDER}/expected-suite-joint", "kind": "expected-suite", "n": min(HEADLINE_N, n),
             "samples": HEADLINE[0], "n_iter": HEADLINE[1]},
            {**base, "name": f"{FOLDER}/expected-converge", "kind": "expected-converge",
             "n": min(CONVERGE_N, n), "grid": [list(g) for g in GRID]},
            {**base, "name": f"{FOLDER}/expected-aa-rand", "kind": "expected-aa-rand", "n": min(AA_N, n),
             "samples": 20, "n_iter": 100}]


def check_record(record: dict, job: dict) -> dict:
    """Refuse a results file whose R (draws) or S (EOT samples) is not its job's, naming both."""
    for key, want, what in (("draws", job.get("draws"), "R (fresh draws per point)"),
                            ("samples", job.get("samples"), "S (EOT samples)")):
        if want is not None and record.get(key) != want:
            raise EmpirError(f"{job['name']}: its results file has {what} = {record.get(key)!r} but the job asks "
                             f"for {want!r}; delete the file to rerun, or fix the job.")
    return record


def converged(points: list[dict], tolerance: float = TOLERANCE) -> dict:
    """The setting to quote from the convergence points (``samples``, ``n_iter``, ``robust``).

    The first (S, N) whose (2S, 2N) is measured and changes ``robust`` by less
    than ``tolerance``: that (2S, 2N) is quoted.  Without one, the largest
    setting measured, with ``converged`` False.
    """
    by = {(p["samples"], p["n_iter"]): p for p in points}
    for (s, n), p in sorted(by.items(), key=lambda kv: kv[0][0] * kv[0][1]):
        q = by.get((2 * s, 2 * n))
        if q is not None and abs(q["robust"] - p["robust"]) < tolerance:
            return {"samples": 2 * s, "n_iter": 2 * n, "converged": True, "from": [s, n]}
    s, n = max(by, key=lambda k: k[0] * k[1])
    return {"samples": s, "n_iter": n, "converged": False, "from": None}


def summary(name: str, p: np.ndarray, draws: int) -> dict:
    e = expected.estimate(p, draws)
    return {f"{name}": round(e["mean"], 6), f"{name}_se": round(e["se"], 6),
            f"{name}_ci95": [round(e["lo"], 6), round(e["hi"], 6)], f"{name}_se_draws": round(e["se_draws"], 6)}


def run_job(job: dict, dataset: str, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, out_dir: Path,
            partial_dir: Path, progress: bool = True, prov: dict | None = None) -> tuple[dict, bool]:
    """Run one job unless its results file exists (a file whose R or S is not the job's is refused)."""
    n = min(job["n"], len(y))
    path = Path(out_dir) / f"{job['name']}.json"
    stem = Path(partial_dir) / f"{dataset}-{job['name'].replace('/', '-')}"
    samples, n_iter = job.get("samples"), job.get("n_iter")
    if path.is_file():
        record = check_record(results.read_result(path), job)
        # Done when it holds this job's images, grid and iterations (a changed grid or N reruns it).
        if all(record.get(k) == v for k, v in (("n", n), ("grid", job.get("grid")), ("n_iter", job.get("n_iter")))
               if v is not None):
            return record, False
        if job["kind"] == "expected-converge":
            _extend(record, job, path, stem)
    xs, ys = np.asarray(x[:n], np.float32), np.asarray(y[:n]).reshape(-1).astype(np.int64)
    t0 = time.perf_counter()
    if job["kind"] == "expected-converge":
        record, arrays = _converge(job, ens, xs, ys, stem, progress)
    else:
        record, arrays = _suite(job, ens, xs, ys, samples, n_iter, stem, progress)
    record.update({"kind": job["kind"], "members": list(job["members"]), "n": n, "draws": job["draws"],
                   "threat": {"name": "linf-5-255", "norm": "linf", "eps": EPS},
                   "wall_time_s": round(time.perf_counter() - t0, 1)})
    npz = path.with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(npz, lambda p: np.savez_compressed(open(p, "wb"), **arrays))
    record["per_image"] = {"file": npz.name, "n": n}
    written = results.write_result(path, record, dataset, prov=prov)
    for f in stem.parent.glob(stem.name + "*"):
        f.unlink()
    return written, True


def _extend(record: dict, job: dict, path: Path, stem: Path) -> None:
    """A finished grid that is a prefix of the job's: its points become the partial run's, so that a
    longer grid runs only its new settings."""
    old = [[p["samples"], p["n_iter"]] for p in record["points"]]
    part = stem.with_suffix(".json")
    if part.is_file() or old != [list(g) for g in job["grid"][:len(old)]]:
        return
    with np.load(path.with_suffix(".npz")) as f:
        arrays = dict(f)
    part.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(stem.with_name(stem.name + "-p.npz"), lambda p: np.savez(open(p, "wb"), **arrays))
    points = [{k: v for k, v in p.items() if k != "doubled"} for p in record["points"]]
    atomic_write(part, lambda p: Path(p).write_text(json.dumps(points)))


def _converge(job, ens, x, y, stem, progress) -> tuple[dict, dict]:
    part = stem.with_suffix(".json")
    done = json.loads(part.read_text()) if part.is_file() else []
    arrays = {}
    if done:
        with np.load(stem.with_name(stem.name + "-p.npz")) as f:
            arrays = dict(f)
    for s, n_iter in job["grid"][len(done):]:
        t0 = time.perf_counter()
        spec = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "samples": s, "n_iter": n_iter,
                 "restarts": 1}]
        res = expected_suite.evaluate(ens, x, y, EPS, spec, job["draws"], seed=s * 1000 + n_iter,
                                      state_path=stem.with_name(stem.name + "-run.npz"), progress=progress)
        stem.with_name(stem.name + "-run.npz").unlink(missing_ok=True)
        arrays.setdefault("clean", res["clean"])
        arrays[f"robust_s{s}_n{n_iter}"] = res["robust"]
        done.append({"samples": s, "n_iter": n_iter, **summary("robust", res["robust"], job["draws"]),
                     "attacked": res["stats"]["apgd-ce"]["attacked"],
                     "seconds": round(time.perf_counter() - t0, 1)})
        atomic_write(stem.with_name(stem.name + "-p.npz"), lambda p: np.savez(open(p, "wb"), **arrays))
        atomic_write(part, lambda p: Path(p).write_text(json.dumps(done)))
        if progress:
            print(f"  S={s:3d} N={n_iter:3d}: expected robust {100 * done[-1]['robust']:.2f}% "
                  f"({done[-1]['seconds']:.0f} s)", flush=True)
    for p in done:  # each point against the one with S and N doubled, paired on the same images
        key = f"robust_s{2 * p['samples']}_n{2 * p['n_iter']}"
        if key in arrays:
            d = expected.paired(arrays[f"robust_s{p['samples']}_n{p['n_iter']}"], arrays[key])
            p["doubled"] = {k: round(d[k], 6) for k in ("diff", "se", "lo", "hi")}
    chosen = converged(done)
    at = next(p for p in done if (p["samples"], p["n_iter"]) == (chosen["samples"], chosen["n_iter"]))
    record = {"grid": job["grid"], "points": done, "chosen": chosen, "tolerance": TOLERANCE,
              **{k: at[k] for k in ("robust", "robust_se", "robust_ci95", "robust_se_draws")},
              "attack": "EOT APGD-CE (ce_mean_prob), 1 restart", **summary("clean", arrays["clean"], job["draws"])}
    return record, arrays


def _suite(job, ens, x, y, samples, n_iter, stem, progress) -> tuple[dict, dict]:
    if job["kind"] == "expected-aa-rand":
        specs = expected_suite.autoattack_rand(samples, n_iter)
    else:
        specs = expected_suite.suite(ens, samples, n_iter, **SQUARE)
    res = expected_suite.evaluate(ens, x, y, EPS, specs, job["draws"], state_path=stem.with_suffix(".npz"),
                                  progress=progress)
    record = {"samples": samples, "stages": specs, **summary("clean", res["clean"], job["draws"]),
              **summary("robust", res["robust"], job["draws"]),
              "robust_majority": round(float(np.mean(res["robust"] > 0.5)), 6), "stats": res["stats"]}
    names = ["clean", *res["stages"]]
    record["lowest_by_stage"] = {nm: int(np.sum(res["best_stage"] == j)) for j, nm in enumerate(names)}
    per = res["per_stage"]
    record["stage_expected"] = {nm: round(float(np.nanmean(per[:, j])), 6) if np.isfinite(per[:, j]).any()
                                else None for j, nm in enumerate(names)}
    arrays = {"clean": res["clean"], "robust": res["robust"], "per_stage": per, "best_stage": res["best_stage"]}
    if job["kind"] == "expected-suite":
        t0 = time.perf_counter()
        at = expected.lottery(ens, res["points"], y, list(QUERIES))
        ctrl = expected.lottery(ens, x, y, list(QUERIES))
        record["lottery"] = {"queries": list(QUERIES), "attack": at["survive"], "control": ctrl["survive"],
                             "attack_mean_p_power": at["mean_p_power"], "control_mean_p_power": ctrl["mean_p_power"],
                             "seconds": round(time.perf_counter() - t0, 1)}
    record["n_iter"] = n_iter
    return record, arrays


def read(name: str, dataset: str = "cifar10", root: str | os.PathLike | None = None) -> dict | None:
    """A results file of this study, checked against its job (R and S), or None while it is missing."""
    record = results.find(dataset, f"{FOLDER}/{name}", root)
    if record is None:
        return None
    job = next(j for j in jobs(record["members"], 10**9) if j["name"] == f"{FOLDER}/{name}")
    return check_record(record, job)
