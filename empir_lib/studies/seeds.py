"""How much of each number is the training seed: EMPIR and its FP baseline from independent seed sets.

Every member of the zoo is one training run, so a gain of a few points could
be seed noise.  ``settings.DATASETS[name].seed_sets`` lists three independent
sets of the paper's EMPIR configuration (Table 2, section 5.2), no member
shared between sets; each set's FP member is that set's FP baseline.  The
first set is the book's own EMPIR (its results are ``table2/`` and ``suite/``);
``empir zoo build --dataset <ds> --seed-sets`` trains the others and
``empir reproduce <ds> --only seeds/`` evaluates them:

* the paper protocol's four attacks (CW, FGSM, BIM, PGD) on all ``n`` images,
  as ``seeds/set<k>/<row>-paper-<attack>``, whose mean is Table 2's "average";
* the worst-case suite at every threat model, as ``seeds/set<k>/<row>-<threat>``:
  L-inf on all ``n`` images, L2 (the costliest by far) on the first ``select_n``,
  where the first set's numbers are read from its per-image outcomes on the
  same images, so all three sets are compared on the same images.

:func:`seed_values` reads them back; :func:`spread` gives mean and standard
deviation over the sets; :func:`compare` decides a difference against both
the seed spread and the test-set interval.
"""
from __future__ import annotations

import os

import numpy as np

from ..attack import outcomes, suite
from ..core import paper, settings
from ..core.errors import EmpirError, check_choice
from . import results, suite_checks

FOLDER = "seeds"
ROWS = ("empir", "baseline")


def sets(dataset: str) -> list[dict[str, list[str]]]:
    """Each seed set's rows: ``{"empir": [zoo ids], "baseline": [its FP member]}``."""
    s = settings.get(dataset)
    out = []
    for ids, specs in zip(s.seed_set_ids(), s.seed_sets):
        fp = [m for m, (w, a, *_) in zip(ids, specs) if settings.is_full_precision(w, a)]
        out.append({"empir": ids, "baseline": fp})
    if not out:
        raise EmpirError(f"{dataset} has no seed sets (settings: seed_sets); the seed study covers "
                         f"{', '.join(d for d, x in settings.DATASETS.items() if x.seed_sets)}.")
    return out


def _n(dataset: str, threat_name: str, n: int, select_n: int) -> int:
    # L2 costs ten times the L-inf threats (the suite attacks every image it cannot break early).
    return select_n if suite.threat(dataset, threat_name)["norm"] == "l2" else n


def jobs(dataset: str, n: int, select_n: int, kind: str | None = None,
         root: str | os.PathLike | None = None) -> list[dict]:
    """The jobs of sets 2, 3, ...: the suite at the L-inf threats, the paper protocol, then the suite at L2.

    Cheapest first (the L-inf suites break nearly every image at once; L2 costs
    the most), so a run cut short leaves whole columns behind.  ``kind``
    ('linf', 'paper' or 'l2') keeps one of the three; a dataset without seed
    sets has none.  When ``n`` is not the n of set 1's Table 2 and suite files
    (a study run on the first 2,000 images, say), set 1's rows are run again
    on those images as ``seeds/set1/...``: the paper protocol keeps no
    per-image file to read a prefix from, the suite has grown since set 1's
    files were written, and every set must meet the same attacks on the same
    images.
    """
    if kind is not None:
        check_choice(kind, ("linf", "paper", "l2"), "kind of seed-study job")
    if not settings.get(dataset).seed_sets:
        return []
    linf, l2, paper_jobs = [], [], []
    first = sets(dataset)[0]
    for row in ROWS:
        reduced = False
        for attack in results.ATTACK_COLUMNS:
            r = results.find(dataset, _paper_name(1, row, attack), root)
            if r is not None and r["n"] != n:
                reduced = True
                paper_jobs.append(_paper_job(f"{FOLDER}/set1/{row}-paper-{attack}", first[row], attack, n))
        # A study on other images than Table 2's: set 1 meets the suite again with the others, since the
        # suite has grown since the book's own suite files were written and every set must meet the same attacks.
        for threat_name, threat in suite.threats(dataset).items() if reduced else ():
            job = {"name": f"{FOLDER}/set1/{row}-{threat_name}", "members": first[row], "threat": threat_name,
                   "kind": "cascade", "n": _n(dataset, threat_name, n, select_n)}
            (l2 if threat["norm"] == "l2" else linf).append(job)
    for k, rows in enumerate(sets(dataset)[1:], start=2):
        for threat_name, threat in suite.threats(dataset).items():
            for row in ROWS:
                job = {"name": f"{FOLDER}/set{k}/{row}-{threat_name}", "members": rows[row], "threat": threat_name,
                       "kind": "cascade", "n": _n(dataset, threat_name, n, select_n)}
                (l2 if threat["norm"] == "l2" else linf).append(job)
        for row in ROWS:
            for attack in results.ATTACK_COLUMNS:
                paper_jobs.append(_paper_job(f"{FOLDER}/set{k}/{row}-paper-{attack}", rows[row], attack, n))
    return {"linf": linf, "paper": paper_jobs, "l2": l2}.get(kind, linf + paper_jobs + l2)


def _paper_job(name: str, members: list[str], attack: str, n: int) -> dict:
    return {"name": name, "members": members, "rule": "vote", "attack": attack, "protocol": "paper",
            "objective": None, "params": {}, "n": n}


def _paper_name(k: int, row: str, attack: str) -> str:
    return f"table2/{row}-paper-{attack}" if k == 1 else f"{FOLDER}/set{k}/{row}-paper-{attack}"


def _paper_record(dataset: str, k: int, row: str, attack: str, n: int | None,
                  root: str | os.PathLike | None) -> dict | None:
    """Set k's paper-protocol record on ``n`` images: set 1's own re-run on them when Table 2 has another n."""
    r = results.find(dataset, _paper_name(k, row, attack), root)
    if k == 1 and n is not None and (r is None or r["n"] != n):
        r = results.find(dataset, f"{FOLDER}/set1/{row}-paper-{attack}", root)
    if r is not None and n is not None and r["n"] != n:
        return None  # not on the compared images: missing, not a number on other images
    return r


def _suite_name(k: int, row: str, threat_name: str) -> str:
    return f"suite/{row}-{threat_name}" if k == 1 else f"{FOLDER}/set{k}/{row}-{threat_name}"


def _robust(dataset: str, name: str, n: int | None, root: str | os.PathLike | None) -> dict | None:
    """A suite file's robust accuracy (%) on its first ``n`` images (all when None), from its per-image outcomes."""
    path = results.results_dir(dataset, root) / f"{name}.json"
    if not path.is_file():
        return None
    record = results.read_result(path)
    if n is None or n >= record["n"]:
        return {"value": 100 * record["robust_accuracy"], "clean": 100 * record["clean_accuracy"], "n": record["n"]}
    broken_by = outcomes.load(path, record)["broken_by"][:n]
    return {"value": 100 * float(np.mean(outcomes.robust_mask(broken_by))),
            "clean": 100 * float(np.mean(broken_by != outcomes.CLEAN)), "n": int(n)}


def _set1_suite(dataset: str, row: str, threat: str, n: int | None,
                root: str | os.PathLike | None) -> str | None:
    """Set 1's file that met the current suite on the study's images, or None for the book's own suite file.

    Sets 2 and 3 meet the whole current suite.  Set 1's own suite file may
    predate its newest stages: its re-run for this study (``seeds/set1/...``)
    comes first, then its ``-stages`` file (the same suite with the new stages
    added on its survivors) when that covers the compared images.  Never its
    re-check: a doubled budget the other sets did not meet would not compare.
    """
    rerun = f"{FOLDER}/set1/{row}-{threat}"
    if results.find(dataset, rerun, root) is not None:
        return rerun
    stages = results.find(dataset, f"{_suite_name(1, row, threat)}-stages", root)
    if stages is not None and n is not None and stages["n"] >= n:
        return f"{_suite_name(1, row, threat)}-stages"
    return None


def seed_values(dataset: str, n_l2: int | None = None, root: str | os.PathLike | None = None) -> list[dict]:
    """Per seed set, per row, in %: ``clean``, ``paper_average`` (CW, FGSM, BIM, PGD), and each threat's robust.

    Every set is read on the images set 2 was evaluated on: each threat on
    the first n of set 2's file (``n_l2`` overrides it for L2), the paper
    protocol on set 2's n (set 1 from its re-run on those images when Table 2
    has another n).  A value whose file is missing, or covers other images,
    is None.  A threat whose every set was re-checked reads each set's last
    round (:func:`_settled`); ``<threat>_file`` names the file read.
    """
    out = []
    l2 = [t for t, v in suite.threats(dataset).items() if v["norm"] == "l2"]
    n_threat = {}
    for t in suite.threats(dataset):
        found = _robust(dataset, _suite_name(2, "empir", t), None, root)
        n_threat[t] = found["n"] if found else None
    if n_l2 is not None:
        n_threat.update({t: n_l2 for t in l2})
    ref = results.find(dataset, _paper_name(2, "empir", results.ATTACK_COLUMNS[0]), root)
    n_paper = ref["n"] if ref else None
    for k, _ in enumerate(sets(dataset), start=1):
        entry = {"set": k}
        for row in ROWS:
            accs, clean = [], None
            for attack in results.ATTACK_COLUMNS:
                r = _paper_record(dataset, k, row, attack, n_paper, root)
                accs.append(None if r is None else 100 * r["adversarial_accuracy"])
                clean = clean if r is None else 100 * r["clean_accuracy"]
            entry[row] = {"clean": clean, "paper_average": None if None in accs else float(np.mean(accs)),
                          "paper_n": n_paper, **{a: v for a, v in zip(results.ATTACK_COLUMNS, accs)}}
            for t in suite.threats(dataset):
                name = _suite_name(k, row, t)
                if k == 1:
                    name = _set1_suite(dataset, row, t, n_threat[t], root) or name
                got = _robust(dataset, name, n_threat[t], root)
                entry[row][t] = None if got is None else got["value"]
                entry[row][f"{t}_n"] = None if got is None else got["n"]
                entry[row][f"{t}_file"] = name
        out.append(entry)
    for row in ROWS:
        for t in suite.threats(dataset):
            _settled(dataset, [e[row] for e in out], t, n_threat[t], root)
    return out


def _settled(dataset: str, cells: list[dict], threat: str, n: int | None, root: str | os.PathLike | None) -> None:
    """Every set's value from its last re-check round, when every set of the row has one on the compared images.

    A number is quoted once it has stopped moving (:mod:`empir_lib.attack.convergence`),
    so the strongest evaluation is the one to compare; but only when all sets
    met one, as one set at a budget the others did not meet would not compare.
    """
    last = []
    for cell in cells:
        evals = suite_checks.evaluations(dataset, cell[f"{threat}_file"], root)
        rounds = [name for name, r in evals if name.endswith(suite_checks.RECHECKS) and r["n"] >= (n or r["n"])]
        last.append(rounds[-1] if rounds else None)
    if None in last:
        return
    for cell, name in zip(cells, last):
        got = _robust(dataset, name, n, root)
        cell.update({threat: got["value"], f"{threat}_n": got["n"], f"{threat}_file": name})


def spread(values: list[float | None]) -> dict:
    """Mean and sample standard deviation over the seed sets measured (None when fewer than two)."""
    got = [v for v in values if v is not None]
    return {"mean": float(np.mean(got)) if got else None, "sd": float(np.std(got, ddof=1)) if len(got) > 1 else None,
            "k": len(got), "values": values}


def compare(a: list[float | None], b: list[float | None], n: int | None = None) -> dict:
    """Is ``a`` above ``b`` beyond the seed spread?  Per-set differences, their mean and sd, and a verdict.

    The difference survives the seed spread when every set's difference has
    the same sign and their mean is more than one standard deviation of the
    differences from zero; with one set only, nothing can be said about seeds.
    ``n``: the images per set, for the test-set interval of each set's value
    (two 95% Wilson intervals apart or overlapping).
    """
    diffs = [x - y if x is not None and y is not None else None for x, y in zip(a, b)]
    s = spread(diffs)
    same_sign = s["k"] > 0 and (all(d > 0 for d in diffs if d is not None) or all(d < 0 for d in diffs
                                                                                  if d is not None))
    if s["k"] < 2:
        verdict = "one seed set: the seed spread is not measured"
    elif same_sign and abs(s["mean"]) > s["sd"]:
        verdict = "beyond the seed spread"
    else:
        verdict = "inside the seed spread"
    apart = None
    if n:
        apart = []
        for x, y in zip(a, b):
            if x is None or y is None:
                apart.append(None)
                continue
            (xl, xh), (yl, yh) = (outcomes.wilson_interval(round(v * n / 100), n) for v in (x, y))
            apart.append(xl > yh or yl > xh)
    return {**s, "same_sign": same_sign, "verdict": verdict, "intervals_apart": apart}


def versus_paper(dataset: str, values: list[dict]) -> dict:
    """Our paper-protocol average over seed sets against the paper's Table 2 (EMPIR and baseline rows)."""
    out = {}
    for row in ROWS:
        s = spread([v[row]["paper_average"] for v in values])
        theirs = paper.TABLE2[dataset][row]["average"]
        inside = None if s["sd"] is None else abs(s["mean"] - theirs) <= 2 * s["sd"]
        out[row] = {**s, "paper": theirs, "within_two_sd": inside}
    return out
