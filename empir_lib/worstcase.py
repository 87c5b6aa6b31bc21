"""The worst-case evaluation as results files: the jobs ``empir reproduce`` runs, and reading them back.

Each job runs the suite (:mod:`empir_lib.suite`) on one ensemble under one
threat model and writes ``data/results/<dataset>/suite/<row>-<threat>.json``
with the per-image outcomes beside it (``.npz``, :mod:`empir_lib.outcomes`)
and the diagnostics (:mod:`empir_lib.diagnostics`).  ``<row>-l2-min`` holds
CW-L2's minimal L2 on the first ``select_n`` images.  An interrupted job
resumes from its last finished chunk (``runs/suite/``).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from . import diagnostics, outcomes, results, settings, suite
from . import ensemble as ens_mod
from .errors import EmpirError

FOLDER = "suite"


def jobs(dataset: str, n: int, select_n: int) -> list[dict]:
    """One job per (row, threat model), EMPIR and the FP baseline, plus EMPIR's minimal-L2 run."""
    s = settings.get(dataset)
    rows = {"empir": s.empir_ids, "baseline": [s.empir_fp]}
    out = []
    for threat_name in suite.threats(dataset):
        for row, members in rows.items():
            out.append({"name": f"{FOLDER}/{row}-{threat_name}", "members": members, "threat": threat_name,
                        "kind": "cascade", "n": n})
    out.append({"name": f"{FOLDER}/empir-l2-min", "members": rows["empir"], "threat": "l2", "kind": "min_l2",
                "n": select_n})
    return out


def config(job: dict, dataset: str, ens: ens_mod.Ensemble, n: int) -> dict:
    """What a job's results file must record for it to count as done (compared on rerun)."""
    threat = suite.threats(dataset)[job["threat"]]
    attack = suite.attack_suite(ens, threat) if job["kind"] == "cascade" else [{"name": "cw-l2", "kind": "cw",
                                                                                 **suite.CW_SEARCH}]
    return {"members": list(job["members"]), "rule": ens.rule, "threat": {"name": job["threat"], **threat},
            "attacks": attack, "n": n, "kind": job["kind"]}


def is_done(path: Path, cfg: dict) -> bool:
    if not path.is_file():
        return False
    old = results.read_result(path)
    return all(old.get(k) == json.loads(json.dumps(v)) for k, v in cfg.items())


def run_job(job: dict, dataset: str, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, out_dir: Path,
            partial_dir: Path, progress: bool = True, prov: dict | None = None) -> tuple[dict, bool]:
    """Run one suite job unless its results file already holds the same configuration."""
    n = min(job["n"], len(y))
    path = Path(out_dir) / f"{job['name']}.json"
    cfg = config(job, dataset, ens, n)
    if is_done(path, cfg):
        return results.read_result(path), False
    t0 = time.perf_counter()
    xs, ys = x[:n], y[:n]
    if job["kind"] == "cascade":
        state = Path(partial_dir) / f"suite-{dataset}-{job['name'].replace('/', '-')}.npz"
        res = suite.cascade(ens, xs, ys, cfg["threat"] | {}, cfg["attacks"], state_path=state, progress=progress)
        diag = diagnostics.run(ens, xs, ys, suite.threats(dataset)[job["threat"]], res)
        record = _summary(cfg, res["broken_by"], res["counts"], res["stats"], ys, ens)
        record["diagnostics"] = diag
        norm = res["norm"]
    else:
        state = None
        res = suite.min_l2(ens, xs, ys, progress=progress)
        names = ["cw-l2"]
        record = _summary(cfg, res["broken_by"], outcomes.counts(res["broken_by"], names),
                          {"cw-l2": {"attacked": res["attacked"], "broken": res["found"],
                                     "seconds": round(res["seconds"], 1)}}, ys, ens)
        record.update(median_l2=res["median_l2"], found=res["found"])
        norm = res["norm"]
    path.parent.mkdir(parents=True, exist_ok=True)
    record["per_image"] = outcomes.save(path.with_suffix(".npz"), res["broken_by"], norm)
    # This invocation's time plus the attack time of earlier, interrupted ones.
    record["wall_time_s"] = round(time.perf_counter() - t0 + res.get("resumed_s", 0.0), 1)
    written = results.write_result(path, record, dataset, prov=prov)
    if state is not None:
        state.unlink(missing_ok=True)
    return written, True


def _summary(cfg: dict, broken_by: np.ndarray, counts: dict, stats: dict, y: np.ndarray,
             ens: ens_mod.Ensemble) -> dict:
    n = len(y)
    robust = int(np.sum(broken_by == outcomes.ROBUST))
    lo, hi = outcomes.wilson_interval(robust, n)
    return {**cfg, "clean_accuracy": round(1 - counts["clean"] / n, 6), "robust_accuracy": round(robust / n, 6),
            "robust_ci95": [round(lo, 6), round(hi, 6)], "broken_by": counts,
            "stats": {k: {**v, "seconds": round(v["seconds"], 1)} for k, v in stats.items()},
            "members_are_fp": list(ens.fp)}


def load(dataset: str, name: str, root: str | os.PathLike | None = None) -> tuple[dict, dict]:
    """A suite results file and its per-image arrays (checked against each other)."""
    path = results.results_dir(dataset, root) / FOLDER / f"{name}.json"
    record = results.read_result(path)
    return record, outcomes.load(path, record)


def table(dataset: str, root: str | os.PathLike | None = None) -> dict:
    """Robust accuracy (%) per row and threat model from the committed suite files (None where missing)."""
    out: dict = {}
    for threat_name in suite.threats(dataset):
        for row in ("baseline", "empir"):
            path = results.results_dir(dataset, root) / FOLDER / f"{row}-{threat_name}.json"
            out.setdefault(row, {})[threat_name] = (100 * results.read_result(path)["robust_accuracy"]
                                                    if path.is_file() else None)
    return out


def check_job_name(dataset: str, name: str) -> str:
    names = [j["name"] for j in jobs(dataset, 1, 1)]
    if name not in names:
        raise EmpirError(f"unknown suite job {name!r}; choose one of: {', '.join(names)}.")
    return name
