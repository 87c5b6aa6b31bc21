"""The worst-case evaluation as results files: the jobs ``empir reproduce`` runs, and reading them back.

Each job runs the suite (:mod:`empir_lib.attack.suite`) on one ensemble under one
threat model and writes ``data/results/<dataset>/suite/<row>-<threat>.json``
with the per-image outcomes beside it (``.npz``, :mod:`empir_lib.attack.outcomes`)
and the diagnostics (:mod:`empir_lib.attack.diagnostics`).  ``<row>-min-l2`` holds
CW-L2's minimal L2 on the first ``select_n`` images (kept for comparison);
``empir-min-norm`` the minimal L2 that always succeeds, and
``<row>-<threat>-recheck`` each row's convergence re-check (both
:mod:`empir_lib.studies.suite_checks`).  An interrupted job resumes from its
last finished chunk (``runs/suite/``).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..attack import diagnostics, minnorm, outcomes, suite
from ..core import settings, tables
from ..core import threats as threat_models
from ..core.errors import EmpirError
from ..nets import ensemble as ens_mod
from . import results, suite_checks

FOLDER = "suite"


def jobs(dataset: str, n: int, select_n: int) -> list[dict]:
    """One job per (row, threat model), EMPIR and the FP baseline, their re-checks, EMPIR's minimal-L2 runs.

    The minimal-L2 jobs are named ``empir-min-l2`` (CW, kept for comparison)
    and ``empir-min-norm`` (:mod:`empir_lib.studies.suite_checks`), so that
    ``--only suite/empir-l2`` selects the L2 threat model (and its re-check).
    Each row's re-check (``<row>-<threat>-recheck``) follows every cascade.
    """
    s = settings.get(dataset)
    rows = {"empir": s.empir_ids, "baseline": [s.empir_fp]}
    out = []
    for threat_name in suite.threats(dataset):
        for row, members in rows.items():
            out.append({"name": f"{FOLDER}/{row}-{threat_name}", "members": members, "threat": threat_name,
                        "kind": "cascade", "n": n})
    out += [{**j, "name": f"{j['name']}-recheck", "kind": "recheck", "base": j["name"]} for j in list(out)]
    out.append({"name": f"{FOLDER}/empir-min-l2", "members": rows["empir"], "threat": "l2", "kind": "min_l2",
                "n": select_n})
    out.append({"name": f"{FOLDER}/empir-min-norm", "members": rows["empir"], "threat": "l2", "kind": "min_norm",
                "n": select_n})
    return out


def config(job: dict, dataset: str, ens: ens_mod.Ensemble, n: int) -> dict:
    """What a job's results file must record for it to count as done (compared on rerun)."""
    threat = suite.threat(dataset, job["threat"])
    attack = suite.attack_suite(ens, threat) if job["kind"] == "cascade" else [{"name": "cw-l2", "kind": "cw",
                                                                                 **suite.CW_SEARCH}]
    return {"members": list(job["members"]), "rule": ens.rule, "threat": {"name": job["threat"], **threat},
            "attacks": attack, "n": n, "kind": job["kind"]}


def run_job(job: dict, dataset: str, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, out_dir: Path,
            partial_dir: Path, progress: bool = True, prov: dict | None = None) -> tuple[dict, bool]:
    """Run one suite job unless its results file already holds the same configuration."""
    if job["kind"] in suite_checks.KINDS:  # stages added to a row, its re-check, the minimal L2
        return suite_checks.run_job(job, dataset, ens, x, y, out_dir, partial_dir, progress, prov)
    n = min(job["n"], len(y))
    path = Path(out_dir) / f"{job['name']}.json"
    cfg = config(job, dataset, ens, n)
    if (old := results.done(path, cfg)) is not None:
        return old, False
    t0 = time.perf_counter()
    xs, ys = x[:n], y[:n]
    if job["kind"] == "cascade":
        state = Path(partial_dir) / f"suite-{dataset}-{job['name'].replace('/', '-')}.npz"
        res = suite.cascade(ens, xs, ys, cfg["threat"], cfg["attacks"], state_path=state, progress=progress)
        diag = diagnostics.run(ens, xs, ys, suite.threat(dataset, job["threat"]), res)
        record = summary(cfg, res["broken_by"], res["counts"], res["stats"], ys, ens)
        record["diagnostics"] = diag
    else:
        state = None
        res = minnorm.cw_min_l2(ens, xs, ys, progress=progress)
        record = summary(cfg, res["broken_by"], outcomes.counts(res["broken_by"], ["cw-l2"]),
                          {"cw-l2": {"attacked": res["attacked"], "broken": res["found"],
                                     "seconds": round(res["seconds"], 1)}}, ys, ens)
        record.update(median_l2=res["median_l2"], found=res["found"])
    return suite_checks.write(path, record, res, time.perf_counter() - t0, dataset, prov, state), True


def summary(cfg: dict, broken_by: np.ndarray, counts: dict, stats: dict, y: np.ndarray,
            ens: ens_mod.Ensemble) -> dict:
    """A suite record: ``cfg`` with clean and robust accuracy, the robust share's 95% interval and the counts."""
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
            r = results.find(dataset, f"{FOLDER}/{row}-{threat_name}", root)
            out.setdefault(row, {})[threat_name] = 100 * r["robust_accuracy"] if r else None
    return out


def check_job_name(dataset: str, name: str) -> str:
    names = [j["name"] for j in jobs(dataset, 1, 1)]
    if name not in names:
        raise EmpirError(f"unknown suite job {name!r}; choose one of: {', '.join(names)}.")
    return name


ROW_LABELS = {"baseline": "baseline (FP)", "empir": "EMPIR"}


def threat_rows(dataset: str, root: str | os.PathLike | None = None) -> list[dict]:
    """Robust accuracy (%) per threat model for each row, beside the old per-attack adaptive rows.

    Each row: ``row``, ``clean`` and one entry per threat model (None where
    the file is missing), and ``n``: the images each evaluation ran on.  The
    EMPIR row also carries ``old_linf`` (the old adaptive protocol's lowest
    figure among FGSM, BIM and PGD at the Table 1 eps, each attack with its
    own objective) and ``old_cw`` (the old adaptive
    CW, judged on the objective), and ``median_l2`` from the minimal-L2 run
    (``empir-min-norm``, with ``median_l2_ci95``; CW's ``empir-min-l2`` where it is missing).
    """
    base = results.results_dir(dataset, root)
    out = []
    for row, label in ROW_LABELS.items():
        entry: dict = {"row": label, "clean": None, "n": {}}
        for threat_name in suite.threats(dataset):
            path = base / FOLDER / f"{row}-{threat_name}.json"
            if path.is_file():
                r = results.read_result(path)
                entry[threat_name] = 100 * r["robust_accuracy"]
                if r["n"] > max(entry["n"].values(), default=0):  # clean accuracy on the most images
                    entry["clean"] = 100 * r["clean_accuracy"]
                entry["n"][threat_name] = r["n"]
            else:
                entry[threat_name] = None
        if row == "empir":
            old = results.table2(dataset, root).get("EMPIR, adaptive protocol", {})
            linf = [old.get(a) for a in ("fgsm", "bim", "pgd")]
            entry["old_linf"] = None if None in linf else min(linf)
            entry["old_cw"] = old.get("cw")
            # The minimal L2 that always succeeds (empir-min-norm) where it exists; CW's (empir-min-l2) before it.
            r = results.find(dataset, f"{FOLDER}/empir-min-norm", root) or results.find(
                dataset, f"{FOLDER}/empir-min-l2", root)
            entry["median_l2"] = r["median_l2"] if r else None
            entry["median_l2_ci95"] = r.get("median_ci95") if r else None
        out.append(entry)
    return out


def job_times(dataset: str, root: str | os.PathLike | None = None) -> dict:
    """Job seconds from ``timing.json``: the suite's EMPIR jobs against the old adaptive selection and rows.

    Like for like: the old adaptive protocol attacked EMPIR alone, so the
    suite's FP-baseline jobs (which it had no counterpart for) are summed
    apart, as ``baseline_s``.
    """
    path = results.results_dir(dataset, root) / "timing.json"
    steps = json.loads(path.read_text())["steps"] if path.is_file() else {}
    old = {k: v for k, v in steps.items()
           if k.startswith("adaptive-select/") or "empir-adaptive-" in k}
    new = {k: v for k, v in steps.items() if k.startswith(f"{FOLDER}/empir-")}
    base = {k: v for k, v in steps.items() if k.startswith(f"{FOLDER}/") and k not in new}
    return {"suite_s": round(sum(new.values()), 1), "suite_jobs": len(new),
            "baseline_s": round(sum(base.values()), 1), "baseline_jobs": len(base),
            "old_adaptive_s": round(sum(old.values()), 1), "old_adaptive_jobs": len(old)}


def diagnostics_rows(dataset: str, root: str | os.PathLike | None = None) -> list[dict]:
    """One row per suite file: its diagnostics' values and flags (for the chapter's table)."""
    out = []
    for name in sorted(results.names(dataset, f"{FOLDER}/", root)):
        r = results.load(dataset, name, root)
        d = r.get("diagnostics")
        if d is None:
            continue
        v = d["values"]
        # The per-image transfer check, from the per-image file (older files predate it in their diagnostics).
        tc = diagnostics.transfer_check(r["attacks"], outcomes.load(results.results_dir(dataset, root) /
                                                                    f"{name}.json", r)["broken_by"])
        flags = list(d["flags"])
        if tc["flag"] and not any(f.startswith("transfer_per_image") for f in flags):
            flags.append(f"transfer_per_image: {tc['images']} images ({tc['share']:.2%}) broken only by "
                         "single-member or transfer stages after the ensemble-level gradient stages failed")
        out.append({"evaluation": name.split("/", 1)[1], "zero grad": f"{v.get('zero_gradient_share', 0):.1%}",
                    "no progress": f"{v.get('no_progress_share', 0):.1%}",
                    "Square after white-box": v.get("square_broke_after_white_box", "n/a"),
                    "unbounded robust": f"{v.get('unbounded_robust', float('nan')):.0%}",
                    "transfer / white-box robust": (f"{v['transfer_fp_robust']:.0%} / {v['white_box_robust']:.0%}"
                                                    if "transfer_fp_robust" in v else "n/a"),
                    "broken only by one member": f"{tc['images']} ({tc['share']:.2%})" if tc["per_stage"] else "n/a",
                    "flags": "; ".join(flags) or "none"})
    return out



def threat_table(dataset: str, root: str | os.PathLike | None = None) -> str:
    """Markdown: robust accuracy (%) per threat model, baseline and EMPIR, beside the old adaptive rows."""
    threats = suite.threats(dataset)
    rows = threat_rows(dataset, root)
    cols = ["row", "clean", *threats, "median_l2", "old_linf", "old_cw"]
    heads = ["row", "clean"] + [_threat_text(t, th) for t, th in threats.items()] + [
        "median minimal L2 (first images)", "old adaptive: lowest of FGSM/BIM/PGD", "old adaptive: CW"]
    shown = []
    for r in rows:
        cell = {"row": r["row"], "clean": tables.percent_cell(r["clean"])}
        most = max(r["n"].values(), default=0)
        cell.update({t: tables.percent_cell(r.get(t)) + (f" (first {r['n'][t]:,} images)"
                                                         if r["n"].get(t, most) < most else "")
                     for t in threats})
        med = r.get("median_l2")
        ci = r.get("median_l2_ci95")
        note = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else " (CW)"  # the interval, or whose figure it is
        cell["median_l2"] = tables.DASH if med is None else f"{med:.2f}{note}"
        cell["old_linf"] = tables.percent_cell(r.get("old_linf"))
        cell["old_cw"] = tables.percent_cell(r.get("old_cw"))
        shown.append(cell)
    return tables.markdown_table(shown, cols, heads)


def _threat_text(name: str, threat: dict) -> str:
    return f"{threat_models.label(name)} (eps = {threat_models.eps_text(threat['norm'], threat['eps'])})"


def cascade_counts(dataset: str, root: str | os.PathLike | None = None) -> dict[str, dict]:
    """``{label: per-stage counts}`` of every committed cascade, in cascade order (for :func:`plots.cascade_bars`)."""
    out = {}
    for threat_name, threat in suite.threats(dataset).items():
        for row, label in ROW_LABELS.items():
            path = results.results_dir(dataset, root) / FOLDER / f"{row}-{threat_name}.json"
            if path.is_file():
                out[f"{label}, {_threat_text(threat_name, threat)}"] = outcomes.stage_counts(results.read_result(path))
    return out


def minimal_l2(dataset: str, root: str | os.PathLike | None = None) -> tuple[np.ndarray, str] | None:
    """EMPIR's per-image minimal L2 (0 if misclassified, inf if none found), checked, and the attack that found it.

    The minimal-norm attack that always succeeds (``empir-min-norm``:
    :mod:`empir_lib.attack.minnorm`) where it exists, else CW's
    (``empir-min-l2``); None while neither exists.
    """
    for name, attack in (("empir-min-norm", "minimal-norm attack"), ("empir-min-l2", "CW")):
        path = results.results_dir(dataset, root) / FOLDER / f"{name}.json"
        if path.is_file():
            return outcomes.load(path, results.read_result(path))["norm"], attack
    return None


def suite_table(ens: ens_mod.Ensemble, threat: dict) -> str:
    """Markdown: the suite's attacks for ``ens`` under ``threat``, in cascade order, with their settings."""
    rows = []
    for i, s in enumerate(suite.attack_suite(ens, threat), start=1):
        if s["kind"] in ("apgd", "pgd"):
            what = f"`{s['loss']}`, {s['n_iter']} iterations, up to {s['restarts']} restart(s)"
            if s["kind"] == "pgd":
                what += f", step {s['step_frac']} x eps"
        elif s["kind"] == "apgd-t":
            what = (f"`{s['loss']}`, {s['n_iter']} iterations, {s['restarts']} start(s) per target, "
                    f"top {s['targets']} target classes")
        elif s["kind"] == "square":
            what = f"{s['queries']} queries, gradient-free"
        else:
            what = (f"{s['binary_search_steps']} binary-search steps x {s['max_iterations']} Adam steps, "
                    f"c from {s['initial_const']}, margin on the mean logits")
        rows.append({"stage": i, "attack": s["name"], "kind": s["kind"], "settings": what})
    return tables.markdown_table(rows, ["stage", "attack", "kind", "settings"])


def stage_table(cascade_or_record: dict) -> str:
    """Markdown: per stage of a cascade, the images it attacked and broke, its seconds and image-steps."""
    stats = cascade_or_record["stats"]
    specs = cascade_or_record.get("attacks") or cascade_or_record["config"]["attacks"]
    order = [a["name"] for a in specs if a["name"] in stats]  # cascade order (a JSON file sorts its keys)
    rows = [{"stage": name, "attacked": stats[name]["attacked"], "broke": stats[name]["broken"],
             "seconds": f"{stats[name]['seconds']:.1f}", "steps": stats[name].get("image_steps", "")}
            for name in order]
    return tables.markdown_table(rows, ["stage", "attacked", "broke", "seconds", "steps"],
                                 ["stage", "images attacked", "images broken", "seconds", "image-steps"])


def diagnostics_table(dataset: str, root: str | os.PathLike | None = None) -> str:
    """Markdown: :func:`diagnostics_rows` for ``dataset`` (a dash line when no suite file exists yet)."""
    rows = diagnostics_rows(dataset, root)
    if not rows:
        return tables.missing_line("suite results", [f"{dataset}/{FOLDER}/empir-linf-table1"],
                                   f"empir reproduce {dataset} --only {FOLDER}/")
    cols = list(rows[0])
    return tables.markdown_table(rows, cols)


def gain_lines(dataset: str, root: str | os.PathLike | None = None) -> list[str]:
    """One sentence per threat model: EMPIR's robust accuracy against its FP member's, from the suite files.

    The suite alone first (on every image it ran on); then, where either row
    has a stronger evaluation (new stages, re-check rounds), both rows'
    strongest ones on the images both cover, and whether each stopped moving.
    """
    rows = {r["row"]: r for r in threat_rows(dataset, root)}
    base, empir = rows[ROW_LABELS["baseline"]], rows[ROW_LABELS["empir"]]
    out = []
    for t, threat in suite.threats(dataset).items():
        b, e = base.get(t), empir.get(t)
        label = f"{dataset}, {_threat_text(t, threat)}"
        if b is None or e is None:
            out.append(f"{label}: {tables.DASH} (run `empir reproduce {dataset} --only {FOLDER}/`)")
            continue
        line = f"{label}: the suite alone, EMPIR {e:.2f}% robust, its FP member alone {b:.2f}% ({e - b:+.2f} points)"
        evals = {row: suite_checks.evaluations(dataset, f"{FOLDER}/{row}-{t}", root) for row in ("empir", "baseline")}
        if any(len(v) > 1 for v in evals.values()):
            w = suite_checks.strongest_pair(dataset, evals["empir"], evals["baseline"], root)
            se, sb = 100 * w["robust_first"] / w["n"], 100 * w["robust_second"] / w["n"]
            status = []
            for row, v in evals.items():
                rc = suite_checks.recheck_of(v)
                if rc is None or not rc["converged"]:
                    status.append(f"{ROW_LABELS[row]} {'not re-checked' if rc is None else 'still moving'}")
            where = f"the first {w['n']:,}" if w["n"] < min(empir["n"][t], base["n"][t]) else f"{w['n']:,}"
            line += (f"; the strongest evaluations, on {where} images: EMPIR {se:.2f}%, its FP member "
                     f"{sb:.2f}% ({se - sb:+.2f} points), "
                     + (f"{', '.join(status)}: upper bounds" if status else "both converged"))
        out.append(line)
    return out
