"""Chapter 11, part 2: the stochastic-quantiser ensemble, its robust accuracy as an expected accuracy.

Farkya, Raghavan and Ziskind (2023, abstract) report over 50% under PGD at
5/255 on CIFAR-10 for a jointly trained stochastic-quantiser ensemble.  The
quantity measured here (:mod:`empir_lib.attack.expected`) is the expected
accuracy over the defence's draws at the attacker's chosen point;
:mod:`empir_lib.studies.expected_study` writes it under ``stochastic/``.
Here: a worked example of the definition (:func:`worked_example`), the
convergence table (:func:`convergence_table`), the headline beside the
deterministic rows (:func:`comparison_table`), which stage found each
image's worst point (:func:`stage_table`), the lottery of the older "any of
Q queries" rule (:func:`lottery`) and the claim checked (:func:`claim_lines`).
The older rule's numbers (:mod:`empir_lib.studies.eot_study`, items 1-5) are
kept as secondary numbers (:func:`old_rule_table`).  The suite's run on a GPU
(:func:`empir_lib.book.chapters.stochastic_gpu.gpu`) leads the comparison and
the claim where it is there; its own tables are in :mod:`.stochastic_gpu`.

Every function takes ``root`` (default ``data/results``); a missing file
gives None or a dash.
"""
from __future__ import annotations

import numpy as np

from ...attack import expected
from ...core import paper
from ...core.errors import EmpirError
from ...core.tables import DASH, markdown_table, percent_cell
from ...nets import diversity, stochastic, zoo
from ...nets import ensemble as ens_mod
from ...studies import eot_study, expected_study, results
from .committed import Root
from .stochastic_gpu import DATASET, cell, gpu, pct


def worked_example(hits: list[int], draws: int, queries: int) -> dict:
    """The definition on a few images: each right on ``hits[i]`` of ``draws`` draws at the attacker's point.

    Returns per image the expected accuracy ``p = hits / draws`` and the chance
    ``p ** queries`` that it is right on every one of ``queries`` queries (the
    older rule), and the means of both over the images (in %).
    """
    p = np.asarray(hits, float) / draws
    if not len(p) or np.any((p < 0) | (p > 1)):
        raise EmpirError(f"hits {hits!r}: each must be between 0 and draws ({draws}), at least one.")
    rows = [{"image": chr(65 + i), "hits": f"{h} of {draws}", "p": percent_cell(100 * v),
             "q": percent_cell(100 * v ** queries)} for i, (h, v) in enumerate(zip(hits, p))]
    return {"rows": rows, "expected": 100 * float(p.mean()), "any_query": 100 * float(np.mean(p ** queries)),
            "queries": queries,
            "table": markdown_table(rows, ["image", "hits", "p", "q"],
                                    ["image", "right on", "expected accuracy p, %",
                                     f"right on all of Q = {queries} queries, p^Q, %"])}


def convergence(root: Root = None) -> dict | None:
    """The convergence run in %: per (S, N) the robust expected accuracy, its interval, the paired change
    when S and N both double, and the seconds; with the setting chosen and the clean expected accuracy."""
    r = expected_study.read("expected-converge", DATASET, root)
    if r is None:
        return None
    points = [{"samples": p["samples"], "n_iter": p["n_iter"], **pct(p, "robust"), "seconds": p["seconds"],
               "doubled": None if "doubled" not in p else {k: 100 * v for k, v in p["doubled"].items()}}
              for p in r["points"]]
    return {"points": points, "chosen": r["chosen"], "n": r["n"], "draws": r["draws"], "clean": pct(r, "clean"),
            "tolerance": 100 * r["tolerance"], "seconds": sum(p["seconds"] for p in r["points"])}


def convergence_table(root: Root = None) -> str:
    """Markdown: one row per (S, N), paired on the same images."""
    c = convergence(root)
    if c is None:
        return DASH
    rows = [{"s": p["samples"], "n": p["n_iter"], "acc": cell(p),
             "d": DASH if p["doubled"] is None else (f"{p['doubled']['diff']:+.2f} ({p['doubled']['lo']:+.2f} to "
                                                     f"{p['doubled']['hi']:+.2f})"),
             "t": f"{p['seconds']:.0f}"} for p in c["points"]]
    return markdown_table(rows, ["s", "n", "acc", "d", "t"],
                          ["S (EOT samples)", "N (iterations)", "robust expected accuracy, % (95% interval)",
                           "change with 2S and 2N, points (95% interval, paired)", "seconds"])


def paired_lines(root: Root = None) -> list[str]:
    """Sentences: per N, the paired change at each step of S and from the smallest to the largest S, and
    the doubling checks, each with its 95% interval (from the per-image estimates beside the convergence file)."""
    c = convergence(root)
    if c is None:
        return []
    path = results.results_dir(DATASET, root) / expected_study.FOLDER / "expected-converge.npz"
    with np.load(path) as f:
        per = {k: f[k] for k in f.files}
    lines = []
    for n_iter in sorted({p["n_iter"] for p in c["points"]}):
        s = sorted(p["samples"] for p in c["points"] if p["n_iter"] == n_iter)
        # Each doubling of S, then (with more than two) the smallest to the largest.
        pairs = list(zip(s, s[1:])) + ([(s[0], s[-1])] if len(s) > 2 else [])
        for a, b in pairs:
            d = expected.paired(per[f"robust_s{a}_n{n_iter}"], per[f"robust_s{b}_n{n_iter}"])
            lines.append(f"N = {n_iter}, S = {a} to {b}: {100 * d['diff']:+.2f} points (paired 95% "
                         f"interval {100 * d['lo']:+.2f} to {100 * d['hi']:+.2f}).")
    for p in c["points"]:
        if p["doubled"] is not None:
            d = p["doubled"]
            word = "within" if abs(d["diff"]) < c["tolerance"] else "outside"
            lines.append(f"S = {p['samples']}, N = {p['n_iter']} to S = {2 * p['samples']}, N = {2 * p['n_iter']}: "
                         f"{d['diff']:+.2f} points (paired 95% interval {d['lo']:+.2f} to {d['hi']:+.2f}), "
                         f"{word} the half-point rule.")
    return lines


def headline(root: Root = None) -> dict | None:
    """The whole suite of stages on the headline images, in %, or None while it is missing."""
    r = expected_study.read("expected-suite-joint", DATASET, root)
    if r is None:
        return None
    return {"clean": pct(r, "clean"), "robust": pct(r, "robust"), "n": r["n"], "draws": r["draws"],
            "samples": r["samples"], "n_iter": r["n_iter"], "majority": 100 * r["robust_majority"],
            "lottery": r["lottery"], "stats": r["stats"],
            # In the order the stages ran (the file's keys are sorted), the clean image first.
            "lowest": {k: r["lowest_by_stage"][k] for k in ["clean", *(s["name"] for s in r["stages"])]},
            "stage_expected": r["stage_expected"], "seconds": r["timing"]["wall_time_s"],
            "se_draws": 100 * r["robust_se_draws"]}


def reference(root: Root = None) -> dict | None:
    """AutoAttack's ``rand`` protocol, scored the same way, in %, or None."""
    r = expected_study.read("expected-aa-rand", DATASET, root)
    if r is None:
        return None
    return {"clean": pct(r, "clean"), "robust": pct(r, "robust"), "n": r["n"], "draws": r["draws"],
            "samples": r["samples"], "n_iter": r["n_iter"], "seconds": r["timing"]["wall_time_s"]}


def stage_table(root: Root = None) -> str:
    """Markdown: per stage, the images it attacked, the mean expected accuracy at its points, the images
    for which its point was the lowest, and its seconds."""
    h = headline(root)
    if h is None:
        return DASH
    rows = []
    for name, low in h["lowest"].items():
        st = h["stats"].get(name, {})
        e = h["stage_expected"].get(name)
        rows.append({"stage": "(the clean image)" if name == "clean" else name,
                     "att": st.get("attacked", h["n"]), "e": percent_cell(None if e is None else 100 * e),
                     "low": low, "t": f"{st['seconds']:.0f}" if st else DASH})
    return markdown_table(rows, ["stage", "att", "e", "low", "t"],
                          ["stage", "images attacked", "mean expected accuracy at its points, %",
                           "images whose lowest point it found", "seconds"])


def lottery(root: Root = None) -> dict | None:
    """The older rule against Q (%): at the attack's final points and at the clean images (the control)."""
    g, h = gpu(root), headline(root)
    if g is not None and g["lottery"] is not None:  # the converged run on 1,000 images, when it is there
        lot, robust, clean, n = g["lottery"], g["robust"], g["clean"], g["n"]
    elif h is not None:
        lot, robust, clean, n = h["lottery"], h["robust"], h["clean"], h["n"]
    else:
        return None
    return {"queries": lot["queries"], "attack": [100 * v for v in lot["attack"]],
            "control": [100 * v for v in lot["control"]], "expected_attack": robust["value"],
            "expected_clean": clean["value"], "n": n}


ROWS = {"empir": "EMPIR (deterministic)", "baseline": "FP baseline",
        "pgdat": "PGD adversarial training (8/255, chapter 10)"}


def comparison_rows(root: Root = None) -> list[dict]:
    """The headline rows (%): the stochastic ensemble's expected accuracy, AutoAttack's rand reference,
    the any-query number and its control, and the deterministic rows under the suite (R = 1)."""
    h, ref, g = headline(root), reference(root), gpu(root)
    out = []
    if g is not None:
        c = g["chosen"]
        out.append({"name": f"stochastic ensemble: expected accuracy, every stage but Square, converged "
                            f"(S = {c['samples']}, N = {c['n_iter']}; GPU)", "clean": g["clean"],
                    "robust": g["robust"], "n": g["n"], "r": g["draws"]})
        if g["aa"] is not None:
            v = g["aa"]["value"]
            out.append({"name": f"stochastic ensemble: AutoAttack rand (S = {g['aa']['samples']}, "
                                f"N = {g['aa']['n_iter']}; GPU-judged)", "clean": None,
                        "robust": {"value": v, "lo": v, "hi": v}, "n": g["n"], "r": g["draws"], "point": True})
    if h is not None:
        out.append({"name": f"stochastic ensemble: expected accuracy, every stage (S = {h['samples']}, "
                            f"N = {h['n_iter']}; CPU)", "clean": h["clean"], "robust": h["robust"], "n": h["n"],
                    "r": h["draws"]})
    if ref is not None:
        out.append({"name": f"stochastic ensemble: AutoAttack rand (S = {ref['samples']}, N = {ref['n_iter']})",
                    "clean": ref["clean"], "robust": ref["robust"], "n": ref["n"], "r": ref["draws"]})
    lot = lottery(root)
    if lot is not None:
        q = lot["queries"][-1]
        for key, what in (("attack", "at the attack's points"), ("control", "at the clean images (control)")):
            v = lot[key][-1]
            out.append({"name": f"stochastic ensemble: right on all Q = {q} queries, {what}", "clean": None,
                        "robust": {"value": v, "lo": v, "hi": v}, "n": lot["n"], "r": q, "point": True})
    for row, name in ROWS.items():
        r = eot_study.read(DATASET, f"suite-5-255-{row}", root)
        if r is not None:
            acc = {"value": 100 * r["robust_accuracy"], "lo": 100 * r["robust_ci95"][0],
                   "hi": 100 * r["robust_ci95"][1]}
            out.append({"name": f"{name}: the suite", "clean": {"value": 100 * r["clean_accuracy"]},
                        "robust": acc, "n": r["n"], "r": 1})
    return out


def comparison_table(root: Root = None) -> str:
    """Markdown: :func:`comparison_rows` and Farkya et al.'s reported number (a lower bound)."""
    body = [{"name": r["name"], "clean": DASH if r["clean"] is None else f"{r['clean']['value']:.2f}",
             "robust": f"{r['robust']['value']:.2f}" if r.get("point") else cell(r["robust"]),
             "n": f"{r['n']:,}", "r": r["r"]} for r in comparison_rows(root)]
    body.append({"name": "*Farkya et al. 2023 (abstract), PGD*", "clean": DASH,
                 "robust": f"*> {paper.FARKYA_PGD_5_255:.0f}*", "n": DASH, "r": DASH})
    return markdown_table(body, ["name", "clean", "robust", "n", "r"],
                          ["row (L-inf 5/255)", "clean, %", "robust, % (95% interval)", "images",
                           "draws per point (R) or queries (Q)"])


def claim_lines(root: Root = None) -> list[str]:
    """Farkya et al.'s claim against our best estimate, the best estimate first."""
    h, c, ref = headline(root), convergence(root), reference(root)
    lines = [f"Claim (Farkya et al. 2023, abstract): over {paper.FARKYA_PGD_5_255:.0f}% accuracy under PGD at "
             "5/255 on CIFAR-10, without adversarial training."]
    if h is None:
        return lines + ["Ours: not yet measured (`empir reproduce cifar10 --only stochastic/expected`)."]
    g = gpu(root)
    if g is not None:
        r, ch, d = g["robust"], g["chosen"], g["suites"][0]
        prev = next((u for u in g["suites"] if [u["samples"], u["n_iter"]] == ch["from"]), None)
        step = "" if prev is None or prev["doubled"] is None else (
            f"; from S = {prev['samples']}, N = {prev['n_iter']} the doubling moved it "
            f"{prev['doubled']['diff']:+.2f} points (paired 95% interval {prev['doubled']['lo']:+.2f} to "
            f"{prev['doubled']['hi']:+.2f})")
        lines.append(f"Ours, best estimate: a robust expected accuracy of {r['value']:.2f}% (95% interval "
                     f"{r['lo']:.2f} to {r['hi']:.2f}) on the first {g['n']:,} images, every stage but Square at "
                     f"S = {ch['samples']}, N = {ch['n_iter']}, R = {g['draws']}, each point judged by the "
                     f"TensorFlow ensemble; clean: {g['clean']['value']:.2f}%. "
                     + ("Converged by the half-point rule" if ch["converged"] else "Not converged") + step
                     + f"; it was {d['value']:.2f}% at S = {d['samples']}, N = {d['n_iter']}. The claim "
                     f"{'holds' if r['lo'] > paper.FARKYA_PGD_5_255 else 'does not hold'} for our ensemble.")
    r = h["robust"]
    lines.append(("On a 2-core CPU, with Square: " if g is not None else "Ours, best estimate: ")
                 + f"a robust expected accuracy of {r['value']:.2f}% (95% interval "
                 f"{r['lo']:.2f} to {r['hi']:.2f}) on {h['n']:,} images, every stage at S = {h['samples']}, "
                 f"N = {h['n_iter']}, R = {h['draws']} draws per point; clean: {h['clean']['value']:.2f}%. "
                 f"The claim {'holds' if r['lo'] > paper.FARKYA_PGD_5_255 else 'does not hold'} for our "
                 "ensemble.")
    if c is not None:
        at = {(p["samples"], p["n_iter"]): p for p in c["points"]}
        first, last = c["points"][0], max(c["points"], key=lambda p: p["samples"] * p["n_iter"])
        lines.append(f"Convergence (APGD-CE alone, {c['n']} paired images): {first['value']:.2f}% at S = "
                     f"{first['samples']}, N = {first['n_iter']}; {last['value']:.2f}% at S = {last['samples']}, "
                     f"N = {last['n_iter']}; "
                     + ("converged by the half-point rule at S = {}, N = {}.".format(
                         c["chosen"]["samples"], c["chosen"]["n_iter"]) if c["chosen"]["converged"] else
                        "not converged by the half-point rule within the grid measured.")
                     + ("" if (h["samples"], h["n_iter"]) not in at else
                        f" The headline's setting gives {at[(h['samples'], h['n_iter'])]['value']:.2f}% there."))
    if ref is not None:
        lines.append(f"AutoAttack's rand protocol on the first {ref['n']} images: {ref['robust']['value']:.2f}% "
                     f"(95% interval {ref['robust']['lo']:.2f} to {ref['robust']['hi']:.2f}).")
    lot = lottery(root)
    lines.append(f"The older rule, right on all of Q = {lot['queries'][-1]} queries: {lot['attack'][-1]:.2f}% at "
                 f"the attack's points, {lot['control'][-1]:.2f}% at the clean images ({lot['n']:,} images); "
                 "a number that falls with Q, so it is not a property of the defence.")
    if h["clean"]["value"] <= paper.FARKYA_PGD_5_255:
        lines.append(f"Our ensemble's clean expected accuracy ({h['clean']['value']:.2f}%) is itself not above "
                     f"{paper.FARKYA_PGD_5_255:.0f}%: no attack result on it could reach the claimed number.")
    return lines


def old_rule_table(root: Root = None) -> str:
    """Markdown: the earlier study's numbers, each under the "one wrong draw breaks it" rule (secondary)."""
    names = {"pgd-5-255-joint": "PGD 5/255, 40 steps", "pgd-0-joint": "noise only: the same PGD at eps = 0",
             "suite-5-255-joint": "the suite (chapter 8)", "suite-5-255-joint-eot8": "the suite (chapter 8)",
             "suite-5-255-joint-eot16": "the suite (chapter 8)"}
    rows = []
    for name, what in names.items():
        r = eot_study.read(DATASET, name, root)
        if r is not None:
            rows.append({"what": what, "s": r["eot_samples"], "n": f"{r['n']:,}",
                         "acc": percent_cell(100 * r["robust_accuracy"])})
    return markdown_table(rows, ["what", "s", "n", "acc"],
                          ["attack (stochastic ensemble)", "S", "images", "'robust' under the any-query rule, %"])


def members_line(dataset: str = DATASET) -> str:
    """Which joint members the zoo holds, with their deployed and nearest-rounding accuracy."""
    have = zoo.members(dataset)
    ids = diversity.joint_ids(dataset)
    if not all(m in have for m in ids):
        return (f"The joint run ({', '.join(ids)}) is not in the zoo yet; "
                f"`empir joint --dataset {dataset} --zoo` trains it.")
    parts = [f"`{m}`: {100 * have[m]['test_accuracy']:.2f}% deployed, "
             f"{100 * have[m]['test_accuracy_nearest']:.2f}% with nearest rounding" for m in ids]
    return "; ".join(parts) + "."


def live_randomness(member: str, x: np.ndarray, y: np.ndarray, draws: int = 10, seed: int = 1) -> dict:
    """One zoo member made stochastic (:func:`empir_lib.nets.stochastic.to_stochastic`) on ``(x, y)``.

    Returns the accuracy of each of ``draws`` forward passes, the accuracy of
    the member with nearest rounding, and the share of images whose class
    changes between draws (the randomness diagnostic).
    """
    model = stochastic.to_stochastic(zoo.load(member), seed=seed)
    ens = ens_mod.make([model], names=[member])
    out = stochastic.disagreement(ens, x, draws)
    accs = [float(np.mean(ens_mod.predict(ens, x) == y)) for _ in range(draws)]
    nearest = ens_mod.make([stochastic.with_inference(model, "nearest")], names=[member])
    return {"draw_accuracy": accs, "nearest_accuracy": float(np.mean(ens_mod.predict(nearest, x) == y)),
            "share": out["share"], "draws": draws, "n": int(len(y))}
