"""``empir reproduce mnist|cifar10|tiny-imagenet``: every result the chapters read, as one resumable plan.

The plan is a list of jobs; each job is one ensemble, one attack, one
protocol and objective, on the first ``n`` test images, and writes one JSON
file under ``data/results/<dataset>/``.  A job whose file exists with the same
configuration is skipped, and an interrupted job resumes from its last
finished batch (``runs/eval/``), so the command can be killed and rerun.

What it produces (paper section 5 and appendix B):

* ``table2/``: the baseline FP row and the EMPIR row (Table 2) under the
  paper protocol, and the EMPIR row under the adaptive protocol: every
  adaptive objective is tried on the first ``select_n`` images
  (``adaptive-select/``) and the worst one is run on all ``n``;
* ``eps8/`` (``eps4/`` for Tiny ImageNet): PGD at a second, smaller eps for the
  same three rows: 8/255, Tramer et al.'s setting (all ``n`` images for CIFAR-10,
  where that setting comes from; ``select_n`` for MNIST), and 4/255 for Tiny ImageNet;
* ``members/``: each EMPIR member alone under the four attacks;
* ``rules/``: averaging against voting for ensembles of two and three;
* ``grid/``: the wbits x abits grid under FGSM (Figure 1) and CW (Figure 3a);
* Tiny ImageNet (the stand-in for the paper's ImageNet row) has Table 2,
  the selection, the members and ``eps4/`` only: its zoo holds no grid;
* MNIST only, ``fig4/``: 0-3 FP and 0-3 LP members under FGSM (Figure 4),
  and ``fig5/``: FGSM eps 0.1-0.8 and CW iterations 10-90 (Figure 5);
* ``sweeps/`` (MNIST and CIFAR-10): accuracy against eps for the FP member and
  the grid, white-box and transferred from the FP member, and the share of
  quantised codes a perturbation flips (:mod:`empir_lib.studies.sweeps`);
* ``defences/``: Table 2's other defences (``settings.DATASETS[name].defence_rows``),
  each row under the paper protocol's four attacks and the worst-case suite at
  Table 1's L-inf eps, on all ``n`` images, after the sweeps and one row at a time;
  a row whose members are not in the zoo yet is skipped with a message naming
  the command that trains them;
* ``seeds/`` (MNIST and CIFAR-10): EMPIR and its FP baseline from independent
  training seeds, under the paper protocol and the suite (:mod:`empir_lib.studies.seeds`);
* ``stochastic/`` (CIFAR-10): the jointly trained stochastic-quantiser ensemble
  (``empir joint --zoo``) under EOT at 5/255: robust accuracy against EOT
  samples, then PGD on all ``n`` and the suite on ``select_n`` beside
  deterministic EMPIR and the FP baseline (:mod:`empir_lib.studies.eot_study`).

Jobs run one attack at a time, cheapest first (``ATTACK_ORDER``): for each
attack the paper rows, its adaptive selection and its adaptive row, then
that attack's sweeps, so that a run stopped part-way (Tiny ImageNet takes
hours on a 2-core CPU) leaves everything for the cheaper attacks.

Table 2 runs on all ``n`` test images.  The selections and sweeps (members,
rules' PGD, the grid's CW, Figure 5's CW, MNIST's 8/255 rows) run on the
first ``select_n`` (default 1,000) to keep the command within hours rather
than a day on a 2-core CPU; every file records its n.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..attack import attacks
from ..core import memo, provenance, settings, threats
from ..core.errors import EmpirError, check_choice, check_positive_int
from ..core.files import write_json
from ..nets import data, ensemble, zoo
from . import cards, eot_study, evaluate, results, seeds, study, sweeps, worstcase
from .study import Context, Entry, Outcome, Study

# The datasets with an EMPIR configuration (settings.DATASETS[name].empir).
DATASETS = tuple(settings.EMPIR_MEMBERS)
# The attacks from cheapest to dearest per image (1 step; PGD's 5 on Tiny ImageNet,
# 40 elsewhere; BIM's 40; CW's 50 with its own optimiser): the order jobs run in.
ATTACK_ORDER = ("fgsm", "pgd", "bim", "cw")
# Figure 4's sweep: up to three FP and three a4w2 MNIST members (settings.MNIST.zoo trains them).
FIG4_FP = [settings.member_id("mnist", settings.FULL_PRECISION, settings.FULL_PRECISION, s) for s in (1, 2, 3)]
FIG4_LP = [settings.member_id("mnist", 2, 4, s) for s in (1, 2, 3)]


def _job(name: str, members: list[str], attack: str, protocol: str = "paper", objective: str | None = None,
         rule: str = "vote", n: int | None = None, **params: float) -> dict:
    return {"name": name, "members": list(members), "rule": rule, "attack": attack, "protocol": protocol,
            "objective": objective, "params": params, "n": n}


def plan(dataset: str, n: int, select_n: int) -> tuple[list[dict], list[dict]]:
    """The jobs before and after the adaptive Table 2 row (which needs the selection first).

    Table 2 runs on all ``n`` images (and, for CIFAR-10, the 8/255 PGD rows);
    the sweeps and selections run on the first ``select_n``.
    """
    empir = settings.EMPIR_MEMBERS[dataset]
    fp, lps = settings.get(dataset).empir_fp, settings.get(dataset).empir_lp
    first, later = [], []
    for a in attacks.ATTACKS:
        first.append(_job(f"table2/baseline-paper-{a}", [fp], a, n=n))
        first.append(_job(f"table2/empir-paper-{a}", empir, a, n=n))
    for a in attacks.ATTACKS:
        for obj in attacks.adaptive_objectives(len(empir)):
            first.append(_job(f"adaptive-select/{a}-{obj.replace(':', '')}", empir, a, "adaptive", obj,
                              n=select_n))
    if dataset == "mnist":
        for n_fp in range(4):
            for n_lp in range(4):
                if n_fp + n_lp:
                    later.append(_job(f"fig4/fp{n_fp}-lp{n_lp}", FIG4_LP[:n_lp] + FIG4_FP[:n_fp], "fgsm", n=n))
    if dataset != "tiny-imagenet":
        for w, a in settings.GRID:
            mid = zoo.find(dataset, w, a)
            later.append(_job(f"grid/{mid}-fgsm", [mid], "fgsm", n=n))
            later.append(_job(f"grid/{mid}-cw", [mid], "cw", n=select_n))
        for rule in ensemble.RULES:
            for size, members in ((2, [lps[0], fp]), (3, empir)):
                later.append(_job(f"rules/{size}-{rule}-fgsm", members, "fgsm", rule=rule, n=n))
                later.append(_job(f"rules/{size}-{rule}-pgd", members, "pgd", rule=rule, n=select_n))
    for m in lps:
        for a in attacks.ATTACKS:
            later.append(_job(f"members/{m}-{a}", [m], a, n=select_n))
    if dataset == "mnist":
        for eps in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
            for row, members in (("baseline", [fp]), ("empir", empir)):
                later.append(_job(f"fig5/{row}-fgsm-eps{eps:.1f}", members, "fgsm", n=n, eps=eps))
        for it in range(10, 100, 10):
            for row, members in (("baseline", [fp]), ("empir", empir)):
                later.append(_job(f"fig5/{row}-cw-iter{it}", members, "cw", n=select_n, max_iterations=it))
    folder, eps2, full = settings.SECOND_EPS[dataset]
    n2 = n if full else select_n
    later.append(_job(f"{folder}/baseline-paper-pgd", [fp], "pgd", n=n2, eps=eps2))
    later.append(_job(f"{folder}/empir-paper-pgd", empir, "pgd", n=n2, eps=eps2))
    return first, later


def defence_jobs(dataset: str, n: int) -> list[dict]:
    """Every defence row under the paper protocol's four attacks, then every row under the suite at Table 1's eps.

    The paper-protocol rows come first: they cost minutes a row, while the suite
    on a gradient-masked row (distillation) cannot shrink its batch early and
    costs hours on a 2-core CPU.
    """
    return defence_paper_jobs(dataset, n) + defence_suite_jobs(dataset, n)


def defence_paper_jobs(dataset: str, n: int) -> list[dict]:
    """Every defence row under the paper protocol's four attacks, cheapest attack first."""
    rows = settings.get(dataset).defence_row_ids()
    return [_job(f"{results.paper_protocol_stem(row)}-{a}", members, a, n=n)
            for row, members in rows.items() for a in ATTACK_ORDER]


def defence_suite_jobs(dataset: str, n: int) -> list[dict]:
    """Every defence row under the worst-case suite at Table 1's L-inf eps (PGD-AT also at the suite's others)."""
    rows = settings.get(dataset).defence_row_ids()
    out = [{"name": results.suite_name(row, threats.TABLE1), "members": members,
            "threat": threats.TABLE1, "kind": "cascade", "n": n} for row, members in rows.items()]
    # The paper's headline compares EMPIR with PGD adversarial training: those rows also meet the suite at
    # the dataset's other L-inf budgets (8/255 for CIFAR-10), where EMPIR's own suite runs (suite/).
    extra = [threats.linf_name(e) for e in settings.get(dataset).suite_linf]
    out += [{"name": results.suite_name(row, t), "members": members, "threat": t, "kind": "cascade",
             "n": n} for row, members in rows.items() if row.split("_")[0] == "pgd-at" for t in extra]
    return out


def adaptive_jobs(dataset: str, n: int, select_n: int, out_dir: Path) -> list[dict]:
    """The adaptive Table 2 row: for each attack, the worst objective of the selection, on all n."""
    empir = settings.EMPIR_MEMBERS[dataset]
    jobs = []
    for a in attacks.ATTACKS:
        tried = {}
        for f in sorted((out_dir / "adaptive-select").glob(f"{a}-*.json")):
            r = results.read_result(f)
            tried[r["objective"]] = r["adversarial_accuracy"]
        if not tried:
            continue
        worst = results.worst_objective(tried)
        job = _job(f"table2/empir-adaptive-{a}", empir, a, "adaptive", worst, n=n)
        job["extra"] = {"selected_from": tried, "selection_n": r["n"]}
        jobs.append(job)
        if a == "pgd":
            folder, eps2, full = settings.SECOND_EPS[dataset]
            job8 = _job(f"{folder}/empir-adaptive-pgd", empir, "pgd", "adaptive", worst,
                        n=n if full else select_n, eps=eps2)
            job8["extra"] = dict(job["extra"])
            jobs.append(job8)
    return jobs


def adaptive_rows(dataset: str, n: int, select_n: int) -> list[dict]:
    """The adaptive rows as planned, before their selection has run (:func:`adaptive_jobs` fills them in)."""
    empir = settings.EMPIR_MEMBERS[dataset]
    folder, eps2, full = settings.SECOND_EPS[dataset]
    out = []
    for a in attacks.ATTACKS:
        out.append(_job(f"table2/empir-adaptive-{a}", empir, a, "adaptive", n=n))
        if a == "pgd":
            out.append(_job(f"{folder}/empir-adaptive-pgd", empir, "pgd", "adaptive", n=n if full else select_n,
                            eps=eps2))
    return out


def run_job(job: dict, dataset: str, x: np.ndarray, y: np.ndarray, out_dir: Path, partial_dir: Path,
            progress: bool = True, prov: dict | None = None) -> tuple[dict, bool]:
    """Run one job unless its results file already holds the same configuration."""
    path = out_dir / f"{job['name']}.json"
    ens = _ensemble(tuple(job["members"]), job["rule"])
    params = attacks.preset(dataset, job["attack"], **job["params"])
    n = min(job["n"], len(y))
    objective = job["objective"] or attacks.objective_for(ens, job["attack"], job["protocol"])
    cfg = {"members": job["members"], "rule": job["rule"], "objective": objective, "params": params, "n": n}
    if (old := results.done(path, cfg)) is not None:
        return old, False
    partial = partial_dir / f"{dataset}-{job['name'].replace('/', '-')}.npz"
    result = evaluate.adversarial_accuracy(ens, job["attack"], x[:n], y[:n], job["protocol"], objective, params,
                                           progress=progress, partial_path=partial)
    record = results.write_result(path, result, dataset, extra=job.get("extra"), prov=prov)
    partial.unlink(missing_ok=True)
    return record, True


def _ensemble(members: tuple, rule: str) -> ensemble.Ensemble:
    # Many jobs share an ensemble: load (and hash-check) each one once per run, and
    # let its traced prediction function be reused across jobs.
    return memo.get("reproduce.ensembles", (members, rule), lambda: ensemble.from_zoo(list(members), rule), 16)


# --- the studies, and the plan they make ----------------------------------------------------------


def _paper_jobs(ctx: Context) -> list[dict]:
    # One attack at a time, cheapest first: its column of Table 2 whole (paper
    # rows, the selection, the adaptive row), then its sweeps.  A run cut short
    # on a slow machine leaves every result of the cheaper attacks behind rather
    # than part of every table.
    first, later = plan(ctx.dataset, ctx.n, ctx.select_n)
    adaptive = adaptive_rows(ctx.dataset, ctx.n, ctx.select_n)
    return [j for a in ATTACK_ORDER for group in (first, adaptive, later) for j in group if j["attack"] == a]


def _adaptive_needs(job: dict) -> tuple[str, ...]:
    # The adaptive row runs the worst objective of its attack's selection.
    return (f"adaptive-select/{job['attack']}-",) if job["protocol"] == "adaptive" and job["objective"] is None else ()


def _adaptive_ready(job: dict, ctx: Context) -> dict | None:
    if not _adaptive_needs(job):
        return job
    chosen = {j["name"]: j for j in adaptive_jobs(ctx.dataset, ctx.n, ctx.select_n, ctx.out_dir)}
    return chosen.get(job["name"])  # None while its selection has not run (e.g. --only table2/)


def _run_paper(job: dict, ctx: Context) -> Outcome:
    record, ran = run_job(job, ctx.dataset, ctx.x, ctx.y, ctx.out_dir, ctx.partial_dir, ctx.progress, ctx.prov)
    return Outcome(record, ran, record["adversarial_accuracy"])


def _run_suite(job: dict, ctx: Context) -> Outcome:
    # The worst-case suite (adaptive protocol, per threat model).
    record, ran = worstcase.run_job(job, ctx.dataset, _ensemble(tuple(job["members"]), "vote"), ctx.x, ctx.y,
                                    ctx.out_dir, ctx.partial_dir, ctx.progress, ctx.prov)
    return Outcome(record, ran, record["robust_accuracy"])


def _run_sweep(job: dict, ctx: Context) -> Outcome:
    # Accuracy against eps per precision (Gorsline et al. 2021).
    record, ran = sweeps.run_job(job, ctx.dataset, ctx.x, ctx.y, ctx.out_dir, ctx.partial_dir, ctx.progress, ctx.prov)
    return Outcome(record, ran, record["headline"])


def _run_eot(job: dict, ctx: Context) -> Outcome:
    # The stochastic ensemble under EOT (Farkya et al. 2023): the curve's headline is its chosen S's accuracy.
    record, ran = eot_study.run_job(job, ctx.dataset, _ensemble(tuple(job["members"]), "vote"), ctx.x, ctx.y,
                                    ctx.out_dir, ctx.partial_dir, ctx.progress, ctx.prov)
    return Outcome(record, ran, record["robust_accuracy_at_chosen" if "chosen" in record else "robust_accuracy"])


def _eot_needs(job: dict) -> tuple[str, ...]:
    # The stochastic row's jobs read their EOT samples from the curve (eot_study.row_samples).
    waits = job["kind"] != "eot-samples" and job["row"] == "joint" and "eot_samples" not in job
    return (f"{eot_study.FOLDER}/eot-samples",) if waits else ()


DEFENDED = "empir zoo build --dataset {dataset} --defended"
# Every study of the plan, in the order a serial run takes them: Table 2's attacks (cheapest first), the
# worst-case suite (per threat model), the sweeps over precision, then the other defences, whose members
# 'empir zoo build --defended' trains separately, and last the stochastic-quantiser ensemble under EOT
# (Farkya et al. 2023), once 'empir joint --zoo' has trained it.
SEED_SETS = "empir zoo build --dataset {dataset} --seed-sets"


STUDIES = (
    Study("paper", _paper_jobs, _run_paper, _adaptive_needs, _adaptive_ready),
    Study("suite", lambda ctx: worstcase.jobs(ctx.dataset, ctx.n, ctx.select_n), _run_suite),
    Study("sweeps", lambda ctx: sweeps.jobs(ctx.dataset, ctx.n, ctx.select_n)
          if ctx.dataset in sweeps.DATASETS else [], _run_sweep),
    Study("defences", lambda ctx: defence_paper_jobs(ctx.dataset, ctx.n), _run_paper, trains=DEFENDED),
    Study("defences-suite", lambda ctx: defence_suite_jobs(ctx.dataset, ctx.n), _run_suite, trains=DEFENDED),
    Study("stochastic", lambda ctx: eot_study.jobs(ctx.dataset, ctx.n, ctx.select_n)
          if ctx.dataset in eot_study.DATASETS else [], _run_eot, _eot_needs,
          trains="empir joint --dataset {dataset} --zoo"),
    # The seed study (EMPIR and FP from independent training seeds): its suite jobs at the L-inf threats,
    # its paper-protocol jobs, then its L2 suite jobs (seeds.jobs' order, cheapest first).
    *(Study(f"seeds-{kind}", lambda ctx, kind=kind: seeds.jobs(ctx.dataset, ctx.n, ctx.select_n, kind,
                                                                 ctx.out_dir.parent), run,
            trains=SEED_SETS) for kind, run in (("linf", _run_suite), ("paper", _run_paper), ("l2", _run_suite))),
)


def prepare(dataset: str, n: int = 10000, select_n: int = 1000, data_dir: str | os.PathLike | None = None,
            out_dir: str | os.PathLike | None = None, partial_dir: str | os.PathLike = "runs/eval",
            only: str | None = None, progress: bool = True, load: bool = True) -> tuple[Context, list[Entry]]:
    """The context and the plan of one invocation; skipped jobs are printed.  ``load=False``: no data, no zoo check."""
    check_choice(dataset, DATASETS, "dataset")
    n = check_positive_int(n, "n")
    select_n = min(check_positive_int(select_n, "select_n"), n)
    have = zoo.members(dataset)
    if load:
        missing = [m for m in _all_members(dataset) if m not in have]
        if missing:
            raise EmpirError(f"the zoo lacks {', '.join(missing)}; "
                             f"train them with 'empir zoo build --dataset {dataset}'.")
    x, y = data.load(dataset, "test", data_dir, n) if load else (None, None)
    # The provenance is taken now: the code that runs is the code at this commit.
    ctx = Context(dataset, n, select_n, x, y, Path(out_dir or results.RESULTS_DIR / dataset), Path(partial_dir),
                  progress, provenance.record(command(dataset, n, select_n)) if load else None)
    entries, skipped = study.plan(list(STUDIES), ctx, only, have)
    if load:
        for line in skipped:
            print(line, flush=True)
    return ctx, entries


def command(dataset: str, n: int, select_n: int) -> str:
    """The command line a results file's provenance and ``timing.json`` record."""
    return f"empir reproduce {dataset} --n {n} --select-n {select_n}"


def reproduce(dataset: str, n: int = 10000, select_n: int = 1000, data_dir: str | os.PathLike | None = None,
              out_dir: str | os.PathLike | None = None, partial_dir: str | os.PathLike = "runs/eval",
              only: str | None = None, progress: bool = True) -> list[dict]:
    """Run the whole plan for ``dataset`` (or the jobs whose name starts with ``only``), one job at a time."""
    ctx, entries = prepare(dataset, n, select_n, data_dir, out_dir, partial_dir, only, progress)
    log, t_start = [], time.perf_counter()
    for entry in entries:
        t0 = time.perf_counter()
        outcome = study.run(entry, ctx)
        if outcome is not None:
            log.append(report(ctx, entry.name, outcome, time.perf_counter() - t0, t_start,
                              lambda line: print(line, flush=True)))
    finish(ctx, log)
    return log


def finish(ctx: Context, log: list) -> None:
    """After a run that wrote results: rewrite the dataset's cards from them (:mod:`empir_lib.studies.cards`)."""
    if log and cards.rows(ctx.dataset, ctx.out_dir.parent):
        cards.write(ctx.dataset, ctx.out_dir.parent)


def report(ctx: Context, name: str, outcome: Outcome, secs: float, t_start: float,
           echo: Callable[[str], object] = print) -> dict:
    """Log one finished job: print its line, and merge its seconds into ``timing.json`` when it ran."""
    if outcome.ran:  # a job resumed from its partial file also spent the earlier invocations' attack time
        secs = max(secs, outcome.record.get("timing", {}).get("wall_time_s", 0.0))
    entry = {"name": name, "ran": outcome.ran, "seconds": round(secs, 1), "headline": outcome.headline}
    if outcome.ran:  # after every job, so a reader sees the times of a run still going
        _write_timing(ctx.out_dir, [entry], time.perf_counter() - t_start, command(ctx.dataset, ctx.n, ctx.select_n))
    echo(f"{ctx.dataset} {name:40s} acc={outcome.headline:.4f} {'ran' if outcome.ran else 'kept'} {secs:7.1f} s")
    return entry


def _all_members(dataset: str) -> list[str]:
    return sorted({m for j in plan_members(dataset) for m in j})


def plan_members(dataset: str) -> list[list[str]]:
    first, later = plan(dataset, 1, 1)
    return [j["members"] for j in first + later]


def _write_timing(out_dir: Path, log: list, total: float, command: str) -> None:
    """Merge the seconds of jobs just run into ``timing.json`` (jobs kept from earlier runs keep their time)."""
    path = out_dir / "timing.json"
    old = json.loads(path.read_text()) if path.is_file() else {"steps": {}}
    for entry in log:
        if entry["ran"]:
            old["steps"][entry["name"]] = entry["seconds"]
    old["total_s"] = round(sum(old["steps"].values()), 1)
    old["last_invocation"] = {"seconds": round(total, 1), **provenance.record(command)}
    write_json(path, old)
